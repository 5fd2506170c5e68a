"""Waiting for the coordinator's verdict on a patch an agent submitted.

The coordinator answers a PatchSubmitted with ``run.patch_applied`` or ``run.patch_rejected``
(``payload.patch_id`` = the PatchSubmitted's event id), appended to the same run's stream,
hence to the same partition of the runs topic, after the submission. ``KafkaVerdicts`` reads
that partition with a consumer of its own, assigned by hand: no group, nothing committed, it
only looks.

It starts a little before the task was scheduled, not at the submission: a redelivered task
that submits the same patch again (same id) gets no second verdict, since the coordinator drops
the duplicate, so the first verdict, older than this second submission, must be found. Records
of other runs are skipped by key, and records that are not verdicts by their type header,
before anything is decoded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka_metadata import key_partition, topic_partitions
from schemas.codec import HEADER_TYPE, decode_event
from schemas.errors import PoisonRecord
from schemas.events import PatchApplied, PatchRejected
from schemas.position import Position

log = logging.getLogger(__name__)

Verdict = PatchApplied | PatchRejected

VERDICT_TYPES = frozenset({PatchApplied.wire_name.encode(), PatchRejected.wire_name.encode()})

# Clocks differ (the coordinator's stamps scheduled_at, the producers' stamp records): start
# this much earlier than the task's schedule so that no verdict about it is missed.
CLOCK_MARGIN_S = 5.0


@dataclass(frozen=True)
class VerdictQuery:
    """Which verdict to wait for, where to look, and for how long."""

    run_id: str
    patch_id: str
    submitted: Position | None  # where the PatchSubmitted landed, when the reporter said
    since: datetime | None  # no verdict on this patch is older (the task's scheduled_at)
    timeout_s: float


class VerdictSource(Protocol):
    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        """The coordinator's verdict on ``query.patch_id``, or None if none came within
        ``query.timeout_s``. Kafka faults propagate (``aiokafka.errors.KafkaError``)."""
        ...


class KafkaVerdicts:
    """Verdicts read from the runs topic (see the module doc): one short-lived consumer per
    wait, since patches are rare and a consumer costs one metadata round trip."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        clock_margin_s: float = CLOCK_MARGIN_S,
        client_id: str = "aob-agent-verdicts",
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._margin_s = clock_margin_s
        self._client_id = client_id

    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # a long poll: the broker answers as soon as data comes
        )
        try:
            async with asyncio.timeout(query.timeout_s):
                await consumer.start()
                return await self._scan(consumer, query)
        except TimeoutError:
            return None
        finally:
            await consumer.stop()

    async def _scan(self, consumer: AIOKafkaConsumer, query: VerdictQuery) -> Verdict:
        tp = TopicPartition(self._topic, await self._partition(consumer, query))
        consumer.assign([tp])
        start = await self._start(consumer, tp, query)
        consumer.seek(tp, start)
        log.debug("waiting for the verdict on patch %s from %s@%d", query.patch_id, tp, start)
        key = query.run_id.encode()
        while True:
            # Blocks in the broker's long poll until records come or a second passes.
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
            for record in batches.get(tp, ()):
                verdict = _verdict_in(record, key, query.patch_id)
                if verdict is not None:
                    return verdict

    async def _partition(self, consumer: AIOKafkaConsumer, query: VerdictQuery) -> int:
        if query.submitted is not None:
            return query.submitted.partition
        # Where a producer puts the run's key (``infra.bus`` uses aiokafka's default).
        partitions = await topic_partitions(consumer, self._topic)
        if not partitions:
            raise LookupError(f"topic {self._topic!r} has no partitions")
        return key_partition(query.run_id.encode(), len(partitions))

    async def _start(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, query: VerdictQuery
    ) -> int:
        """The first offset that may hold the verdict (see the module doc)."""
        candidates: list[int] = []
        if query.submitted is not None:
            candidates.append(query.submitted.offset)
        if query.since is not None:
            ms = int((query.since.timestamp() - self._margin_s) * 1000)
            found = (await consumer.offsets_for_times({tp: max(ms, 0)})).get(tp)
            if found is not None:
                candidates.append(found.offset)
        if candidates:
            return min(candidates)
        # Neither known: nothing but the whole partition is sure to hold it.
        return int((await consumer.beginning_offsets([tp]))[tp])


def _verdict_in(record: ConsumerRecord, key: bytes, patch_id: str) -> Verdict | None:
    if record.key != key:
        return None
    if dict(record.headers or ()).get(HEADER_TYPE) not in VERDICT_TYPES:
        return None
    try:
        event = decode_event(record.value)
    except PoisonRecord:  # not ours to judge: the coordinator dead-letters it
        return None
    if isinstance(event, PatchApplied | PatchRejected) and event.payload.patch_id == patch_id:
        return event
    return None
