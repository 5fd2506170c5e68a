"""The coordinator's agent: the records of ``aob.runs.events``, a batch at a time, for every run.

This is an adapter: the domain it drives (a run's state, how events fold into it, what is
decided) is the run model, ``run_model``, which the command API, the projections and the
replay tooling use as well. Here live Kafka, faust and the table.

faust hands the agent what the partitions have (``processors.batching``: up to
``batch_max`` records, gathered while more keep coming). For
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

Nothing wedges the loop: a record that cannot be handled fails its run, never the
partition. The decider is pure, so a record it raised on raises again on every retry, and
the broker refuses a record it refused on every retry too; holding such a record would stop
every other run of the partition (faust cannot leave one record uncommitted and go on, and
the loop handles a partition in order). So when

- deciding raises (a bug in the decider),
- a decided event or task does not encode, or is larger than the broker takes (every record
  is encoded and measured before it goes into the outbox, ``processors.outbox``), or
- the run's state cannot be stored, or cannot be loaded nor rebuilt from the log,

the record's decision is replaced by failing its run (``run_model.abort.fail_run``: a
RunFailed with the reason, its id derived from the record's event), the run is stored as
FAILED, and the record is parked in the dead-letter topic with the reason and its source
(``aob-dlq-source``), for an operator to look into (a worker parks a task it fails on the
same way, after reporting its node failed with the reason, ``workers.runtime``). The next
record goes on as usual, in the same batch. A record that does not decode is parked without
more: it names no run for sure.

What the broker refuses after all (a topic configured below the sizes checked, so the
refusal comes with the acknowledgement) is handled the same way, in the one order that keeps
the invariant: nothing of the batch is stored yet, so the batch is handled again from its
first record, with the records whose decisions were refused marked to fail their runs
instead (``Batch.doomed``), and the new outbox is sent whole. Records already acknowledged
are sent again with the same ids, as after a crash, and consumers drop them; only then are
states and markers stored. So a stored state still implies that its decisions are in the
log, a FAILED state included: its RunFailed was acknowledged with it. (Such a run may have
decisions in the log that its failure replaced, sent with the first outbox; its RunFailed
follows them, and nothing of it is decided after.) A crash in between replays the batch,
meets the same refusal and fails the run with the same id. A state that cannot be stored is
caught before anything is sent, the same way. Faults of the connection (the broker
unreachable, a timeout) are not refusals: they still raise, nothing is stored, and faust
delivers the batch again.

A run's stored state that does not load (``StateCorrupt``) is rebuilt from the run's records
in the log before the record at hand (``processors.recovery.LogRecovery.run``) and stored
with the batch; the ticker, which decodes every state after a rebalance, skips such a state
and appends a RunWarning to the run, so that the agent meets the run and rebuilds it even if
it only waited for a timer.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from infra.kafka_metadata import key_partition
from infra.memory_release import MemoryRelease
from processors.app import CoordinatorApp
from processors.config import CoordinatorConfig
from processors.errors import (
    CoordinatorError,
    SendRefused,
    StateCorrupt,
    StateUnstorable,
    Unsendable,
)
from processors.outbox import (
    Outgoing,
    Refusal,
    Where,
    dead_letter,
    event_record,
    send_all,
    task_record,
)
from processors.recovery import Rebuilt, Record
from processors.stats import LoopStats
from processors.stored import (
    WORKFLOWS,
    Finished,
    Live,
    decode,
    encode,
    encode_finished,
    encode_unstorable,
    stored_partition,
)
from processors.ticker import Ticker
from run_model import RunState, RunStatus, step
from run_model.abort import fail_run
from run_model.decide import Decision, refuse_after_finish
from run_model.subworkflows import finished_notice
from schemas.codec import decode_event
from schemas.envelope import Event, utcnow
from schemas.errors import PoisonRecord
from schemas.events import (
    MAX_RECORD_BYTES,
    ApprovalSubmitted,
    PatchSubmitted,
    RunForked,
    RunSubmitted,
)

log = logging.getLogger("aob.coordinator")

Clock = Callable[[], datetime]
# Rebuilds the states of a partition's runs from the log, as they were before the record at
# the given offset (``processors.recovery.LogRecovery``).
StateRecovery = Callable[[int, int], Awaitable[Rebuilt]]
# Rebuilds one run (by id) of a partition from the log, as it was before the record at the
# given offset (``processors.recovery.LogRecovery.run``).
RunRecovery = Callable[[str, int, int], Awaitable[Rebuilt]]
# Reads the records of a partition in [start, end) straight from the log.
RangeReader = Callable[[int, int, int], Awaitable[list[Record]]]
# A record of the run topic as the agent gets it: key, value, (partition, offset).
Incoming = tuple[bytes | None, bytes | None, Where]


async def no_recovery(partition: int, before: int) -> Rebuilt:
    """Rebuilds nothing (for tests of the loop alone)."""
    return Rebuilt()


async def no_run_recovery(run_id: str, partition: int, before: int) -> Rebuilt:
    """Rebuilds nothing (for tests of the loop alone)."""
    return Rebuilt()


async def no_reader(partition: int, start: int, end: int) -> list[Record]:
    return []


# Makes the table's writes go to the changelog partition of the given run-topic partition.
PartitionScope = Callable[[int], AbstractContextManager[object]]


def no_scope(partition: int) -> AbstractContextManager[object]:
    """For tables that need no partition (tests of the loop with a dict as the table)."""
    return nullcontext()


@dataclass
class Batch:
    """What handling a batch of records decided, held until the outbox is acknowledged."""

    outbox: list[Outgoing] = field(default_factory=list)
    # Run key -> (its new state, or only its status once it is over; its partition): stored
    # once the outbox is in the log.
    states: dict[bytes, tuple[RunState | Finished, int]] = field(default_factory=dict)
    # Run key -> the first record of the batch about it (blamed if its state cannot be stored).
    first: dict[bytes, Where] = field(default_factory=dict)
    # Partition -> the offset of the next record due, written to the table with the states.
    markers: dict[int, int] = field(default_factory=dict)
    # Records whose decisions cannot be sent, and why: their runs are failed instead.
    doomed: dict[Where, str] = field(default_factory=dict)
    runs_failed: int = 0  # runs the loop failed itself (see _abandon)


class Coordinator:
    def __init__(
        self,
        parts: CoordinatorApp,
        config: CoordinatorConfig,
        *,
        clock: Clock = utcnow,
        recover: StateRecovery = no_recovery,
        read_range: RangeReader = no_reader,
        recover_run: RunRecovery = no_run_recovery,
    ) -> None:
        self.app = parts.app
        self.table = parts.table
        self.config = config
        self.clock = clock
        self.recover = recover
        self.recover_run = recover_run
        self.read_range = read_range
        self.limits = config.patch_limits
        # The largest record sent: the producer's own limit, if it is configured lower.
        conf = getattr(self.app, "conf", None)
        producer_limit = getattr(conf, "producer_max_request_size", None)
        self.record_limit = min(MAX_RECORD_BYTES, producer_limit or MAX_RECORD_BYTES)
        self.stats = LoopStats()
        # Decoded states by run id, with the bytes they were read from or written as: the
        # table stays the truth (a rebalance may replace its bytes), the cache saves a
        # decompression and a JSON parse per event when it is unchanged. At most
        # config.state_cache of them, the most recently used (see _cache).
        self._decoded: OrderedDict[bytes, tuple[bytes, RunState]] = OrderedDict()
        # Partitions whose table was checked for loss since they were assigned.
        self._checked: set[int] = set()
        # Partition -> the offset of the next record to handle (also kept in the table).
        self._next: dict[int, int] = {}
        self.gaps_filled = 0
        # Runs whose stored state did not load when the timer index was rebuilt, by id, with
        # their partitions: the ticker wakes them (see the module doc).
        self.unreadable: dict[str, int] = {}
        self.runs_failed = 0  # by the loop itself: records it could not decide on or send
        self.ticker = Ticker(parts.app, config, clock)
        self.memory = MemoryRelease(config.release_memory_after_s)
        self._batch = Batch()  # the batch being handled (see handle_batch)

    # --- the loop -------------------------------------------------------------------------

    async def handle(self, key: bytes | None, value: bytes | None, where: Where) -> None:
        """Process one record of the run topic at ``where`` = (partition, offset)."""
        await self.handle_batch([(key, value, where)])

    async def handle_batch(self, records: list[Incoming], scope: PartitionScope = no_scope) -> None:
        """Process records of the run topic, each ``(key, value, (partition, offset))``.

        Records are handled in offset order with none left out, whatever faust delivers:
        if a record is past the next one due on its partition, the ones in between are read
        from the log and handled first (see ``_fill_gap``). A record handled before
        (redelivered) changes nothing, as every consumer here is idempotent. If sending the
        outbox fails, nothing of the batch is stored and the error goes up: faust delivers
        the batch again, and its decisions keep their ids. If the broker refuses records of
        it, the batch is handled again with their runs failed instead (see the module doc).
        """
        started = time.perf_counter()
        due_before = dict(self._next)
        self._batch = Batch()
        try:
            handled: list[Incoming] = []
            for key, value, where in records:
                partition, offset = where
                if partition not in self._checked:
                    with scope(partition):  # a rebuilt partition is stored at once
                        await self._check_partition(partition, offset)
                expected = self._next.get(partition)
                if expected is not None and offset > expected:
                    handled += await self._fill_gap(partition, expected, offset)
                await self._handle_one(key, value, where)
                handled.append((key, value, where))
                self._advance(partition, offset)
            while doomed := await self._commit(self._batch, scope):
                done = self._batch
                self._batch = Batch(markers=done.markers, doomed=done.doomed | doomed)
                for key, value, where in handled:  # the same records, gaps included
                    await self._handle_one(key, value, where)
        except BaseException:
            self._next = due_before  # the table's markers stay the truth
            raise
        finally:
            self._batch = Batch()
        self.stats.batch(len(records), time.perf_counter() - started)
        self.memory.worked()

    async def _fill_gap(self, partition: int, start: int, end: int) -> list[Incoming]:
        """Handle the records ``[start, end)`` that faust did not deliver; returns them.

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
        handled: list[Incoming] = []
        for offset, key, value in records:
            await self._handle_one(key, value, (partition, offset))
            handled.append((key, value, (partition, offset)))
            self._advance(partition, offset)
        self.gaps_filled += len(records)
        return handled

    def _advance(self, partition: int, offset: int) -> None:
        if offset + 1 > self._next.get(partition, 0):
            self._next[partition] = offset + 1
            self._batch.markers[partition] = offset + 1

    async def _commit(self, batch: Batch, scope: PartitionScope) -> dict[Where, str]:
        """Encode the batch's states, send the outbox, wait for every acknowledgement at
        once, then store the states. Returns the records to fail the runs of instead, if a
        state cannot be stored (then nothing is sent) or the broker refused a decision (then
        nothing is stored): the batch is handled again with those, see the module doc."""
        stored: dict[bytes, bytes] = {}
        unstorable: dict[Where, str] = {}
        for run_key, (state, partition) in batch.states.items():
            try:
                stored[run_key] = _stored_form(state, partition)
            except StateUnstorable as e:
                unstorable[batch.first[run_key]] = f"the run's state cannot be stored: {e.reason}"
        if unstorable:
            return self._newly_doomed(unstorable)
        refusals = await send_all(self.app.producer, batch.outbox) if batch.outbox else []
        if refusals:
            return self._newly_doomed(self._blame(refusals))
        for run_key, raw in stored.items():
            state, partition = batch.states[run_key]
            with scope(partition):
                self.table[run_key] = raw
            self._stored(run_key, raw, state, partition)
        for partition, due in batch.markers.items():
            with scope(partition):
                self.table[partition_marker(partition)] = str(due).encode()
        self.runs_failed += batch.runs_failed
        return {}

    def _blame(self, refusals: list[Refusal]) -> dict[Where, str]:
        """The records whose decisions the broker refused, with the refusal as the reason."""
        own = [r for r in refusals if r.own]
        if not own:  # none is a record's own refusal (see processors.outbox): a fault
            raise refusals[0].error
        doomed: dict[Where, str] = {}
        for r in own:
            out = r.outgoing
            if out.cause is None:  # a RunFailed or a dead letter: nothing left to replace it
                raise SendRefused(out.topic, repr(r.error)) from r.error
            size = len(out.value or b"")
            doomed.setdefault(
                out.cause,
                f"the broker refused a record of {size} bytes for {out.topic} that the run's "
                f"decision needed: {r.error!r}",
            )
        return doomed

    def _newly_doomed(self, doomed: dict[Where, str]) -> dict[Where, str]:
        again = doomed.keys() & self._batch.doomed.keys()
        if again:  # a record failed its run already, and failing it did not pass either
            raise CoordinatorError(f"failing the runs of records {sorted(again)} did not pass")
        return doomed

    async def _handle_one(self, key: bytes | None, value: bytes | None, where: Where) -> None:
        started = time.perf_counter()
        partition, offset = where
        try:
            event = decode_event(value)
        except PoisonRecord as e:
            self._dead_letter(key, value, e.reason, where)
            return
        except Exception as e:  # a record the codec did not foresee: parked all the same
            log.exception("decoding the record at %s:%d failed", *where)
            self._dead_letter(key, value, f"the record does not decode: {e!r}", where)
            return
        run_key = event.aggregate_id.encode()
        state = await self._state_of(event, (key, value, where))
        doomed = self._batch.doomed.get(where)
        if isinstance(state, Finished):
            if doomed is not None:  # its answer could not be sent: parked with the reason
                self._dead_letter(key, value, doomed, where)
            elif isinstance(event, ApprovalSubmitted | PatchSubmitted):  # told why, not dropped
                refusal = refuse_after_finish(event, state.status, self.clock())
                try:
                    self._batch.outbox.append(self._event_record(refusal, partition, where))
                except Unsendable as e:
                    self._dead_letter(key, value, e.reason, where)
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
        if doomed is not None:
            self._abandon(state, event, doomed, (key, value, where))
            return
        try:
            new_state, decision = step(state, event, self.clock(), self.limits)
        except Exception as e:  # a bug in the decider: the run fails (see the module doc)
            log.exception("deciding on %s %s failed", event.type, event.event_id)
            reason = f"the coordinator could not decide on {event.type} {event.event_id}: {e!r}"
            self._abandon(state, event, reason, (key, value, where))
            return
        if new_state is None or new_state is state:
            self.stats.record(time.perf_counter() - started, 0)
            return  # a duplicate, an echo of our own decision, or a finished run
        try:
            records = self._records(decision, partition, where)
        except Unsendable as e:
            reason = f"the coordinator's decision on {event.type} {event.event_id}: {e.reason}"
            self._abandon(state, event, reason, (key, value, where))
            return
        self._batch.outbox += records
        self._keep(run_key, new_state, partition, where)
        self.stats.record(time.perf_counter() - started, len(records))

    def _records(self, decision: Decision, partition: int, cause: Where) -> list[Outgoing]:
        """The decision's events (to the run's own partition, whatever the partitioner: the
        run stays one stream), its events for other runs (to theirs, by the producer's
        partitioner on their keys, as the command API appends) and tasks as records;
        Unsendable if any cannot be sent."""
        out = [self._event_record(ev, partition, cause) for ev in decision.events]
        # Events for other runs (a parent, a child): to their runs' partitions, by key.
        out += [self._event_record(ev, None, cause) for ev in decision.elsewhere]
        for task in decision.tasks:
            topic = self.config.task_topic(task.node_type)
            out.append(task_record(task, topic, cause, self.record_limit))
        return out

    def _event_record(self, ev: Event, partition: int | None, cause: Where | None) -> Outgoing:
        return event_record(ev, self.config.runs_topic, partition, cause, self.record_limit)

    def _abandon(self, state: RunState | None, cause: Event, reason: str, record: Incoming) -> None:
        """Fail the run of ``cause`` instead of deciding on it, and park its ``record``."""
        key, value, where = record
        run_key, partition = cause.aggregate_id.encode(), where[0]
        log.error("failing run %s: %s", cause.aggregate_id, reason)
        after, failed = fail_run(state, cause, reason, self.clock())
        # A child's parent waits for it: it hears of this failure as of any other.
        notice = finished_notice(after, cause, self.clock()) if after is not None else None
        try:
            self._batch.outbox.append(self._event_record(failed, partition, None))
            if notice is not None:
                self._batch.outbox.append(self._event_record(notice, None, None))
        except Unsendable as e:  # ids a foreign producer made unencodable: parked all the same
            log.error("the RunFailed of run %s cannot be sent either: %s", cause.aggregate_id, e)
        self._keep(run_key, Finished(RunStatus.FAILED), partition, where)
        self._dead_letter(key, value, reason, where)
        self._batch.runs_failed += 1

    # --- the table ------------------------------------------------------------------------

    def _keep(
        self, run_key: bytes, state: RunState | Finished, partition: int, where: Where
    ) -> None:
        """Hold ``state`` for storing once the batch's outbox is in the log."""
        if isinstance(state, RunState):  # its workflow, as the other runs of its version hold it
            state = WORKFLOWS.shared(state)
        self._batch.states[run_key] = (state, partition)
        self._batch.first.setdefault(run_key, where)

    def _load(self, run_key: bytes) -> RunState | Finished | None:
        changed = self._batch.states.get(run_key)
        if changed is not None:  # an earlier record of this batch moved the run on
            state = changed[0]
            if isinstance(state, Finished):
                return state
            return Finished(state.status) if state.finished else state
        raw = self.table.get(run_key)
        if raw is None:
            return None
        cached = self._decoded.get(run_key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            self._decoded.move_to_end(run_key)  # the most recently used again
            return cached[1]
        stored = decode(run_key, raw)
        if isinstance(stored, Finished):
            return stored
        self._cache(run_key, raw, stored.state)
        return stored.state

    async def _state_of(self, event: Event, record: Incoming) -> RunState | Finished | None:
        """The run's state before ``event``: loaded, or rebuilt from the log if what is
        stored does not load; if it cannot be rebuilt, the run is failed (and is Finished)."""
        run_key = event.aggregate_id.encode()
        try:
            return self._load(run_key)
        except StateCorrupt as e:
            corrupt = e
        partition, offset = record[2]
        run_id = event.aggregate_id
        log.error("%s: rebuilding it from the log", corrupt)
        rebuilt = await self.recover_run(run_id, partition, offset)
        if run_id in rebuilt.finished:
            finished = Finished(rebuilt.finished[run_id])
            self._keep(run_key, finished, partition, record[2])
            return finished
        state = rebuilt.states.get(run_id)
        if state is not None:
            try:
                decode(run_key, encode(state, partition))
            except (StateUnstorable, StateCorrupt) as e:
                why = f"and the state rebuilt from the log cannot be stored either: {e}"
            else:
                self._keep(run_key, state, partition, record[2])  # stored even if unchanged
                return state
        else:
            why = "and the log before this record holds no event of the run to rebuild it from"
        reason = f"the run's stored state does not load ({corrupt.reason}), {why}"
        self._abandon(state, event, reason, record)
        return Finished(RunStatus.FAILED)

    def _stored(
        self, run_key: bytes, raw: bytes, state: RunState | Finished, partition: int
    ) -> None:
        """Keep the cache and the timer index in step with what was just stored."""
        if isinstance(state, RunState) and not state.finished:
            self._cache(run_key, raw, state)
            self.ticker.watch(state, partition)
        else:  # nothing more will happen: free the memory
            self._decoded.pop(run_key, None)
            self.ticker.forget(run_key.decode(errors="replace"))

    def _cache(self, run_key: bytes, raw: bytes, state: RunState) -> None:
        """Keep ``state`` decoded as the most recently used, dropping the least recently
        used beyond ``config.state_cache`` (the first key is the one used longest ago)."""
        if self.config.state_cache == 0:
            return
        self._decoded[run_key] = (raw, state)
        self._decoded.move_to_end(run_key)
        while len(self._decoded) > self.config.state_cache:
            self._decoded.popitem(last=False)

    def _store_now(self, run_key: bytes, state: RunState, partition: int) -> None:
        """Store a state outside a batch (one rebuilt for a partition whose table lost it).
        One that cannot be stored is stored as unloadable: the run's next record then fails
        it, with a RunFailed and the reason, as for any state that does not load."""
        try:
            raw = _stored_form(state, partition)
        except StateUnstorable as e:
            self.table[run_key] = encode_unstorable(e.reason)
            return
        self.table[run_key] = raw
        self._stored(run_key, raw, state, partition)

    def live_states(self) -> list[tuple[RunState, int]]:
        """Every unfinished run in the table, with its partition (for the timer index).
        A state that does not load is left out, and noted in ``unreadable``."""
        out = []
        self.unreadable = {}
        partitions = getattr(getattr(self.app, "conf", None), "topic_partitions", 1)
        for key, raw in list(self.table.items()):
            if raw is None or key.startswith(MARKER_PREFIX):
                continue
            try:
                stored = decode(key, raw)
            except StateCorrupt as e:
                log.error("%s: the run is woken, to be rebuilt from the log", e)
                found = stored_partition(raw)
                where = found if found is not None else key_partition(key, partitions)
                self.unreadable[key.decode(errors="replace")] = where
                continue
            if isinstance(stored, Live):
                partition = stored.partition
                if partition is None:  # stored by an earlier release: where Kafka put it
                    partition = key_partition(key, partitions)
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
                    self._store_now(key, state, partition)
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
        self, key: bytes | None, value: bytes | None, reason: str, where: Where
    ) -> None:
        source = f"{self.config.runs_topic}:{where[0]}:{where[1]}"
        log.error("dead-lettering the record at %s: %s", source, reason)
        letter = dead_letter(self.config.dlq_topic, (key, value), reason, source, self.record_limit)
        self._batch.outbox.append(letter)


def _stored_form(state: RunState | Finished, partition: int) -> bytes:
    if isinstance(state, Finished):
        return encode_finished(state.status)
    return encode(state, partition)


MARKER_PREFIX = b"\x00"


def partition_marker(partition: int) -> bytes:
    """The table key holding the next offset due on ``partition``; its presence says the
    table holds the partition's history (run ids never contain NUL, so it meets no run)."""
    return MARKER_PREFIX + b"partition-next/" + str(partition).encode()
