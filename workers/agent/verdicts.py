"""Waiting for the coordinator's verdict on a patch an agent submitted.

The coordinator answers a PatchSubmitted with ``run.patch_applied`` or ``run.patch_rejected``
(``payload.patch_id`` = the PatchSubmitted's event id), appended to the same run's stream,
hence to the same partition of the runs topic, after the submission. ``KafkaVerdicts`` follows
that partition with the run reader of ``infra.run_log`` (a consumer of its own, assigned by
hand: no group, nothing committed, it only looks).

It starts a little before the task was scheduled, not at the submission: a redelivered task
that submits the same patch again (same id) gets no second verdict, since the coordinator drops
the duplicate, so the first verdict, older than this second submission, must be found. Records
of other runs are skipped by key, and records that are not verdicts by their type header,
before anything is decoded.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from aiokafka import ConsumerRecord

from infra.run_log import RunPartition, open_run_partition, run_event
from schemas.codec import HEADER_TYPE
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
        # Where the PatchSubmitted landed, when the reporter said; else where a producer puts
        # the run's key (``infra.run_log`` asks the brokers).
        partition = query.submitted.partition if query.submitted is not None else None
        try:
            async with (
                asyncio.timeout(query.timeout_s),
                open_run_partition(
                    self._bootstrap,
                    query.run_id,
                    topic=self._topic,
                    partition=partition,
                    client_id=self._client_id,
                ) as run,
            ):
                return await self._scan(run, query)
        except TimeoutError:
            return None

    async def _scan(self, run: RunPartition, query: VerdictQuery) -> Verdict | None:
        start = await self._start(run, query)
        log.debug("waiting for the verdict on patch %s from %s@%d", query.patch_id, run.tp, start)
        async with aclosing(run.records(start)) as records:
            async for record in records:  # without an end: as records are appended
                verdict = _verdict_in(record, query.patch_id)
                if verdict is not None:
                    return verdict
        return None  # not reached: only the timeout ends an endless read

    async def _start(self, run: RunPartition, query: VerdictQuery) -> int:
        """The first offset that may hold the verdict (see the module doc)."""
        candidates: list[int] = []
        if query.submitted is not None:
            candidates.append(query.submitted.offset)
        if query.since is not None:
            found = await run.offset_since(query.since - timedelta(seconds=self._margin_s))
            if found is not None:
                candidates.append(found)
        if candidates:
            return min(candidates)
        # Neither known: nothing but the whole partition is sure to hold it.
        return await run.beginning()


def _verdict_in(record: ConsumerRecord, patch_id: str) -> Verdict | None:
    """The verdict on ``patch_id`` that ``record`` (one of the run's) holds, if it does;
    records that are not verdicts are skipped by their type header, before any decoding."""
    if dict(record.headers or ()).get(HEADER_TYPE) not in VERDICT_TYPES:
        return None
    event = run_event(record)
    if isinstance(event, PatchApplied | PatchRejected) and event.payload.patch_id == patch_id:
        return event
    return None
