"""Waiting for the coordinator's verdict on a patch an agent submitted.

The coordinator answers a PatchSubmitted with ``run.patch_applied`` or ``run.patch_rejected``
(``payload.patch_id`` = the PatchSubmitted's event id), appended to the same run's stream,
hence to the same partition of the runs topic, after the submission. ``KafkaVerdicts`` follows
that partition with the run reader of ``infra.run_log`` (a consumer of its own, assigned by
hand: no group, nothing committed, it only looks).

Where reading starts, and why a little before the task was scheduled: ``workers.agent.
run_answers``. Records that are not verdicts are skipped by their type header, before
anything is decoded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiokafka import ConsumerRecord

from infra.run_log import RunPartition, run_event
from schemas.codec import HEADER_TYPE
from schemas.events import PatchApplied, PatchRejected
from schemas.position import Position
from workers.agent.run_answers import CLOCK_MARGIN_S, first_match, first_offset, read_run

log = logging.getLogger(__name__)

Verdict = PatchApplied | PatchRejected

VERDICT_TYPES = frozenset({PatchApplied.wire_name.encode(), PatchRejected.wire_name.encode()})


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
        submitted = query.submitted
        return await read_run(
            self._bootstrap,
            self._topic,
            query.run_id,
            partition=submitted.partition if submitted is not None else None,
            read=lambda run: self._scan(run, query),
            timeout_s=query.timeout_s,
            client_id=self._client_id,
        )

    async def _scan(self, run: RunPartition, query: VerdictQuery) -> Verdict | None:
        at = query.submitted.offset if query.submitted is not None else None
        start = await first_offset(run, at, query.since, self._margin_s)
        log.debug("waiting for the verdict on patch %s from %s@%d", query.patch_id, run.tp, start)
        found: tuple[Verdict, int] | None = await first_match(
            run, start, lambda record: _verdict_in(record, query.patch_id)
        )
        return found[0] if found is not None else None


def _verdict_in(record: ConsumerRecord, patch_id: str) -> Verdict | None:
    """The verdict on ``patch_id`` that ``record`` (one of the run's) holds, if it does;
    records that are not verdicts are skipped by their type header, before any decoding."""
    if dict(record.headers or ()).get(HEADER_TYPE) not in VERDICT_TYPES:
        return None
    event = run_event(record)
    if isinstance(event, PatchApplied | PatchRejected) and event.payload.patch_id == patch_id:
        return event
    return None
