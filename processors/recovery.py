"""Rebuilding lost run states from the log (DESIGN.md: the table is a snapshot of a fold).

When the coordinator finds that its table holds no history of a partition that has some (a
changelog deleted, a faust recovery that came up short: see ``Coordinator._check_partition``),
the run topic is the truth, so the states are rebuilt from it:
every record of the partition before the record being handled is fed through ``step``, in log
order, exactly as the agent fed them, decisions included but not sent. Decisions are pure
functions of the run's events, with ids derived from their causes, so the rebuilt state is
the one the agent had — and the decisions that are already in the log, which come back
later, are recognised as echoes.

One pass rebuilds every run of the partition (a lost changelog loses them all at once);
``LogRecovery.run`` rebuilds one run, whose stored state alone does not load. Of a finished
run only its status is kept: nothing more happens to it. A record the decider raises on
fails its run, as in the agent (``run_model.abort``), so a rebuild never stops on one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from run_model import RunState, RunStatus, step
from run_model.abort import fail_run
from run_model.decide import DEFAULT_LIMITS
from run_model.patching import PatchLimits
from schemas.codec import decode_event
from schemas.errors import PoisonRecord

log = logging.getLogger("aob.coordinator.recovery")

Clock = Callable[[], datetime]
Record = tuple[int, bytes | None, bytes | None]  # offset, key, value


@dataclass
class Rebuilt:
    """The runs of a partition: states of the unfinished ones, statuses of the others."""

    states: dict[str, RunState] = field(default_factory=dict)
    finished: dict[str, RunStatus] = field(default_factory=dict)


def rebuild(
    records: list[bytes | None], clock: Clock, limits: PatchLimits = DEFAULT_LIMITS
) -> Rebuilt:
    """The runs as the agent left them after handling ``records`` (judging patches by the
    same ``limits``)."""
    out = Rebuilt()
    for value in records:
        try:
            event = decode_event(value)
        except PoisonRecord:
            continue  # the agent dead-lettered it
        run_id = event.aggregate_id
        if run_id in out.finished:
            continue
        before = out.states.get(run_id)
        try:
            state, _ = step(before, event, clock(), limits)
        except Exception as e:  # the agent failed the run on this record: so does the rebuild
            log.exception("deciding on %s %s failed: its run failed", event.type, event.event_id)
            state, _ = fail_run(before, event, repr(e), clock())
            out.finished[run_id] = RunStatus.FAILED
            out.states.pop(run_id, None)
            continue
        if state is None:
            continue
        if state.finished:
            out.finished[run_id] = state.status
            out.states.pop(run_id, None)
        else:
            out.states[run_id] = state
    return out


class LogRecovery:
    """Reads ranges of a partition of the run topic straight from the log, and rebuilds a
    partition's runs from its start up to an offset."""

    def __init__(
        self, bootstrap: str, topic: str, clock: Clock, limits: PatchLimits = DEFAULT_LIMITS
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.clock = clock
        self.limits = limits

    async def __call__(self, partition: int, before: int) -> Rebuilt:
        began = time.perf_counter()
        records = await self.read(partition, 0, before)
        rebuilt = rebuild([value for _, _, value in records], self.clock, self.limits)
        log.warning(
            "rebuilt %d unfinished and %d finished runs of %s:%d from %d records of the log "
            "in %.1fs",
            len(rebuilt.states),
            len(rebuilt.finished),
            self.topic,
            partition,
            len(records),
            time.perf_counter() - began,
        )
        return rebuilt

    async def run(self, run_id: str, partition: int, before: int) -> Rebuilt:
        """The run ``run_id`` of ``partition`` as it was before the record at ``before``
        (Kafka keeps no index by key: the partition is read, only the run's records stepped)."""
        began = time.perf_counter()
        key = run_id.encode()
        records = [value for _, k, value in await self.read(partition, 0, before) if k == key]
        rebuilt = rebuild(records, self.clock, self.limits)
        log.warning(
            "rebuilt run %s of %s:%d from its %d records in the log in %.1fs",
            run_id,
            self.topic,
            partition,
            len(records),
            time.perf_counter() - began,
        )
        return rebuilt

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        """(offset, key, value) of every record of ``partition`` in ``[start, end)``."""
        tp = TopicPartition(self.topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        out: list[Record] = []
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for record in batches.get(tp, []):
                    if record.offset >= end:
                        return out
                    out.append((record.offset, record.key, record.value))
            return out
        finally:
            await consumer.stop()
