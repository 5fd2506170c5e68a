"""The coordinator's agent: the records of ``aob.runs.events``, a batch at a time, for every run.

This is an adapter: the domain it drives (a run's state, how events fold into it, what is
decided) is the run model, ``run_model``, which the command API, the projections and the
replay tooling use as well. Here live Kafka, faust and the table.

faust hands the agent what the partitions have (``processors.batching``: up to
``batch_max`` records, waiting at most ``batch_within_s`` for more once one has come). For
each record of a batch, in log order: decode it (a poison record goes to the dead-letter
topic); load the run's state (from the batch, if an earlier record of it changed the run,
else from the table); ``step`` it (pure: evolve, decide, fold the decisions in); and put the
decided events (to the run's own partition) and tasks in the batch's outbox. Then the whole
outbox is sent and the broker's acknowledgement of every record is awaited ONCE; only THEN
are the batch's new states and partition markers written to the table, and faust
acknowledges the batch's records. So a stored state with an event applied still implies that
its decisions are in the log; a crash in-between replays the batch and re-sends the same
decisions under the same ids, which every consumer drops.

Why batches: one round trip to the broker per record capped the loop at the broker's latency
(a few ms, so a few hundred records a second); per batch, the round trip is shared, the
producer packs many records into one request, and a run touched by several records of a batch
is compressed and stored once.

Concurrency is 1 (faust can commit past an unfinished record with more), and nothing slow
runs here: no storage, no HTTP; the IR travels inline in RunSubmitted.

As each state is stored, its pending timers (planned retries, attempt deadlines) go into the
index of ``processors.ticker``, which wakes the run when one is due; the index is rebuilt
from the table after every rebalance. States are stored compact (``processors.stored``).
A table that lost a partition's history (no marker for it, though the partition has records)
is rebuilt from the log before the agent handles anything there (``processors.recovery``).

A bug in the decider (``step`` raising on a record) parks the record in the dead-letter
topic with the reason, and the loop goes on; the workers follow the same policy for a bug in
handling a task (``workers.runtime``). The decider is pure, so the same state and record
raise again on every retry: holding the record would stop every other run of the partition
(faust cannot leave one record uncommitted and go on, and the loop handles a partition in
order). Parked with its source (``aob-dlq-source``), the record can be sent again once the
bug is fixed; the run it belongs to waits for that, the others do not.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust
from faust.streams import _current_event  # see table_scope

from infra.kafka_metadata import key_partition
from processors.app import CoordinatorApp
from processors.batching import take_batches
from processors.config import CoordinatorConfig
from processors.recovery import Rebuilt, Record
from processors.stats import LoopStats
from processors.stored import Finished, Live, decode, encode, encode_finished
from processors.ticker import Ticker
from run_model import RunState, step
from run_model.decide import refuse_after_finish
from schemas.codec import decode_event, encode_event, encode_task
from schemas.envelope import Event, utcnow
from schemas.errors import PoisonRecord
from schemas.events import ApprovalSubmitted, PatchSubmitted, RunForked, RunSubmitted
from schemas.tasks import NodeTask

log = logging.getLogger("aob.coordinator")

Clock = Callable[[], datetime]
# Rebuilds the states of a partition's runs from the log, as they were before the record at
# the given offset (``processors.recovery.LogRecovery``).
StateRecovery = Callable[[int, int], Awaitable[Rebuilt]]
# Reads the records of a partition in [start, end) straight from the log.
RangeReader = Callable[[int, int, int], Awaitable[list[Record]]]


async def no_recovery(partition: int, before: int) -> Rebuilt:
    """Rebuilds nothing (for tests of the loop alone)."""
    return Rebuilt()


async def no_reader(partition: int, start: int, end: int) -> list[Record]:
    return []


# Makes the table's writes go to the changelog partition of the given run-topic partition.
PartitionScope = Callable[[int], AbstractContextManager[object]]


def no_scope(partition: int) -> AbstractContextManager[object]:
    """For tables that need no partition (tests of the loop with a dict as the table)."""
    return nullcontext()


# A record to send: topic, key, value, partition (None: the producer's partitioner), headers.
Outgoing = tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes]]]


@dataclass
class Batch:
    """What handling a batch of records decided, held until the outbox is acknowledged."""

    outbox: list[Outgoing] = field(default_factory=list)
    # Run key -> (its new state, its partition): stored once the outbox is in the log.
    states: dict[bytes, tuple[RunState, int]] = field(default_factory=dict)
    # Partition -> the offset of the next record due, written to the table with the states.
    markers: dict[int, int] = field(default_factory=dict)


class Coordinator:
    def __init__(
        self,
        parts: CoordinatorApp,
        config: CoordinatorConfig,
        clock: Clock = utcnow,
        recover: StateRecovery = no_recovery,
        read_range: RangeReader = no_reader,
    ) -> None:
        self.app = parts.app
        self.table = parts.table
        self.config = config
        self.clock = clock
        self.recover = recover
        self.read_range = read_range
        self.limits = config.patch_limits
        self.stats = LoopStats()
        # Decoded states by run id, with the bytes they were read from or written as: the
        # table stays the truth (a rebalance may replace its bytes), the cache saves a
        # decompression and a JSON parse per event when it is unchanged.
        self._decoded: dict[bytes, tuple[bytes, RunState]] = {}
        # Partitions whose table was checked for loss since they were assigned.
        self._checked: set[int] = set()
        # Partition -> the offset of the next record to handle (also kept in the table).
        self._next: dict[int, int] = {}
        self.gaps_filled = 0
        self.ticker = Ticker(parts.app, config, clock)
        self._batch = Batch()  # the batch being handled (see handle_batch)

    # --- the loop -------------------------------------------------------------------------

    async def handle(self, key: bytes | None, value: bytes | None, where: tuple[int, int]) -> None:
        """Process one record of the run topic at ``where`` = (partition, offset)."""
        await self.handle_batch([(key, value, where)])

    async def handle_batch(
        self,
        records: list[tuple[bytes | None, bytes | None, tuple[int, int]]],
        scope: PartitionScope = no_scope,
    ) -> None:
        """Process records of the run topic, each ``(key, value, (partition, offset))``.

        Records are handled in offset order with none left out, whatever faust delivers:
        if a record is past the next one due on its partition, the ones in between are read
        from the log and handled first (see ``_fill_gap``). A record handled before
        (redelivered) changes nothing, as every consumer here is idempotent. If sending the
        outbox fails, nothing of the batch is stored and the error goes up: faust delivers
        the batch again, and its decisions keep their ids.
        """
        started = time.perf_counter()
        due_before = dict(self._next)
        self._batch = Batch()
        try:
            for key, value, where in records:
                partition, offset = where
                if partition not in self._checked:
                    with scope(partition):  # a rebuilt partition is stored at once
                        await self._check_partition(partition, offset)
                expected = self._next.get(partition)
                if expected is not None and offset > expected:
                    await self._fill_gap(partition, expected, offset)
                await self._handle_one(key, value, where)
                self._advance(partition, offset)
            await self._commit(self._batch, scope)
        except BaseException:
            self._next = due_before  # the table's markers stay the truth
            raise
        finally:
            self._batch = Batch()
        self.stats.batch(len(records), time.perf_counter() - started)

    async def _fill_gap(self, partition: int, start: int, end: int) -> None:
        """Handle the records ``[start, end)`` that faust did not deliver.

        faust can acknowledge a record it never handed to the agent (it skips records of an
        older consumer generation, and its offset tracking has been seen to commit past
        them after a restart), and a record acknowledged is never delivered again. The
        coordinator does not depend on that: the next offset due is part of its own state.
        """
        records = await self.read_range(partition, start, end)
        log.warning(
            "records %d..%d of %s:%d were not delivered: handling them from the log",
            start,
            end - 1,
            self.config.runs_topic,
            partition,
        )
        for offset, key, value in records:
            await self._handle_one(key, value, (partition, offset))
            self._advance(partition, offset)
        self.gaps_filled += len(records)

    def _advance(self, partition: int, offset: int) -> None:
        if offset + 1 > self._next.get(partition, 0):
            self._next[partition] = offset + 1
            self._batch.markers[partition] = offset + 1

    async def _commit(self, batch: Batch, scope: PartitionScope) -> None:
        """Send the outbox, wait for every acknowledgement at once, then store the batch."""
        if batch.outbox:
            producer = self.app.producer
            pending = [await producer.send(*out[:4], None, out[4]) for out in batch.outbox]
            await asyncio.gather(*pending)
        for run_key, (state, partition) in batch.states.items():
            with scope(partition):
                self._store(run_key, state, partition)
        for partition, due in batch.markers.items():
            with scope(partition):
                self.table[partition_marker(partition)] = str(due).encode()

    async def _handle_one(
        self, key: bytes | None, value: bytes | None, where: tuple[int, int]
    ) -> None:
        started = time.perf_counter()
        partition, offset = where
        try:
            event = decode_event(value)
        except PoisonRecord as e:
            self._dead_letter(key, value, e.reason, where)
            return
        run_key = event.aggregate_id.encode()
        state = self._load(run_key)
        if isinstance(state, Finished):
            if isinstance(event, ApprovalSubmitted | PatchSubmitted):  # told why, not dropped
                self._send([refuse_after_finish(event, state.status, self.clock())], [], partition)
            self.stats.record(time.perf_counter() - started, 0)
            return  # the run is over: late answers, duplicates, a cancel that came too late
        if state is None and not isinstance(event, RunSubmitted | RunForked):
            # The partition's table is whole (checked above), so this run never started
            # here: a stray event, or one of a run submitted to another deployment.
            log.warning(
                "no state for run %s at %s:%d:%d (%s); the event is ignored",
                event.aggregate_id,
                self.config.runs_topic,
                partition,
                offset,
                event.type,
            )
            return
        try:
            new_state, decision = step(state, event, self.clock(), self.limits)
        except Exception as e:  # a bug in the decider: parked (see the module doc)
            log.exception("deciding on %s %s failed", event.type, event.event_id)
            self._dead_letter(key, value, f"coordinator could not decide: {e!r}", where)
            return
        if new_state is None or new_state is state:
            self.stats.record(time.perf_counter() - started, 0)
            return  # a duplicate, an echo of our own decision, or a finished run
        self._send(decision.events, decision.tasks, partition)
        self._batch.states[run_key] = (new_state, partition)
        self.stats.record(time.perf_counter() - started, len(decision.events) + len(decision.tasks))

    def _send(self, events: list[Event], tasks: list[NodeTask], partition: int) -> None:
        """Put decisions in the batch's outbox (sent by ``_commit``)."""
        outbox = self._batch.outbox
        for ev in events:
            key, value, headers = encode_event(ev)
            # The run's own partition, whatever the partitioner: the run stays one stream.
            outbox.append((self.config.runs_topic, key, value, partition, headers))
        for task in tasks:
            key, value, headers = encode_task(task)
            outbox.append((self.config.task_topic(task.node_type), key, value, None, headers))

    # --- the table ------------------------------------------------------------------------

    def _load(self, run_key: bytes) -> RunState | Finished | None:
        changed = self._batch.states.get(run_key)
        if changed is not None:  # an earlier record of this batch moved the run on
            state = changed[0]
            return Finished(state.status) if state.finished else state
        raw = self.table.get(run_key)
        if raw is None:
            return None
        cached = self._decoded.get(run_key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        stored = decode(run_key, raw)
        if isinstance(stored, Finished):
            return stored
        self._decoded[run_key] = (raw, stored.state)
        return stored.state

    def _store(self, run_key: bytes, state: RunState, partition: int) -> None:
        raw = encode(state, partition)
        self.table[run_key] = raw
        if state.finished:
            self._decoded.pop(run_key, None)  # nothing more will happen: free the memory
        else:
            self._decoded[run_key] = (raw, state)
        self.ticker.watch(state, partition)

    def live_states(self) -> list[tuple[RunState, int]]:
        """Every unfinished run in the table, with its partition (for the timer index)."""
        out = []
        for key, raw in list(self.table.items()):
            if raw is None or key.startswith(MARKER_PREFIX):
                continue
            stored = decode(key, raw)
            if isinstance(stored, Live):
                partition = stored.partition
                if partition is None:  # stored by an earlier release: where Kafka put it
                    partition = key_partition(key, self.app.conf.topic_partitions)
                out.append((stored.state, partition))
        return out

    async def _check_partition(self, partition: int, offset: int) -> None:
        """Make sure the table holds the partition's history before handling ``offset``.

        The table holds, per partition, the offset of the next record due (written as each
        record is handled); it also says where to go on from. A table recovered without it
        while the partition has records before ``offset`` has lost its history (a changelog
        deleted, or never restored): the states of the partition's runs are then rebuilt
        from the log and stored before anything else happens, so that no event meets a
        missing state and no run waiting only for a timer is forgotten. Checked once per
        assignment of the partition.
        """
        marker = partition_marker(partition)
        if self.table.get(marker) is None and offset > 0:
            log.warning(
                "the table holds no history of %s:%d, which has %d records before this one: "
                "rebuilding the states of its runs from the log",
                self.config.runs_topic,
                partition,
                offset,
            )
            rebuilt = await self.recover(partition, offset)
            for run_id, state in rebuilt.states.items():
                key = run_id.encode()
                if self.table.get(key) is None:
                    self._store(key, state, partition)
            for run_id, status in rebuilt.finished.items():
                key = run_id.encode()
                if self.table.get(key) is None:
                    self.table[key] = encode_finished(status)
        stored = self.table.get(marker)
        due = int(stored) if stored is not None and stored.isdigit() else None
        self._next[partition] = offset if due is None else due
        if stored is None:
            self.table[marker] = str(offset).encode()
        self._checked.add(partition)

    def forget_checks(self) -> None:
        """After a rebalance, check each partition again when it is handled next."""
        self._checked.clear()
        self._next.clear()

    def _dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, where: tuple[int, int]
    ) -> None:
        source = f"{self.config.runs_topic}:{where[0]}:{where[1]}"
        log.error("dead-lettering the record at %s: %s", source, reason)
        headers = [("aob-dlq-reason", reason.encode()[:4000]), ("aob-dlq-source", source.encode())]
        self._batch.outbox.append((self.config.dlq_topic, key, value, None, headers))


MARKER_PREFIX = b"\x00"


def partition_marker(partition: int) -> bytes:
    """The table key holding the next offset due on ``partition``; its presence says the
    table holds the partition's history (run ids never contain NUL, so it meets no run)."""
    return MARKER_PREFIX + b"partition-next/" + str(partition).encode()


def table_scope(events: Sequence[faust.types.EventT[Any]]) -> PartitionScope:
    """Table writes for a partition of a batch, as if made while handling its last record.

    A faust table sends each write to the changelog partition of the record being handled,
    which it reads from the stream's current event; a batch is handled
    outside that iteration, so the event of the partition is made current for its writes.
    """
    last = {e.message.partition: e for e in events}

    @contextmanager
    def scope(partition: int) -> Iterator[object]:
        token = _current_event.set(weakref.ref(last[partition]))
        try:
            yield None
        finally:
            _current_event.reset(token)

    return scope


def register(parts: CoordinatorApp, coordinator: Coordinator) -> None:
    """Attach the agent, the timer and the rebalance hook to the faust app."""

    @parts.app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        coordinator.forget_checks()

    config = coordinator.config

    @parts.app.agent(parts.runs_topic, concurrency=1, name="coordinate")
    async def coordinate(stream: faust.StreamT[bytes]) -> None:
        # A batch's records are acknowledged to faust only when the next batch is asked
        # for, that is after handle_batch stored what they decided.
        async for events in take_batches(stream, config.batch_max, config.batch_within_s):
            await coordinator.handle_batch(
                [(e.key, e.value, (e.message.partition, e.message.offset)) for e in events],
                table_scope(events),
            )

    @parts.app.timer(coordinator.config.timer_interval_s)
    async def fire_timers() -> None:
        ticker = coordinator.ticker
        if ticker.busy():
            return
        # After a rebalance the table was recovered anew: so is the index of timers.
        generation = getattr(parts.app, "rebalancing_count", 0)
        if ticker.generation != generation:
            ticker.rebuild(coordinator.live_states(), generation)
        await ticker.fire()

    if coordinator.config.stats_interval_s > 0:

        @parts.app.timer(coordinator.config.stats_interval_s)
        async def report_stats() -> None:
            figures = coordinator.stats.report()
            figures["timers_fired"] = coordinator.ticker.fired_total
            figures["gap_records_filled"] = coordinator.gaps_filled
            if figures["events"]:
                log.info("coordinator loop: %s", figures)
