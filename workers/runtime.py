"""The worker process: one Kafka consumer per node type it serves, tasks run concurrently.

Each type has consumer group ``aob-workers-<type>`` on ``aob.tasks.<type>``, auto-commit off.
Tasks of one partition run concurrently (up to ``concurrency`` in the whole process): a slow
HTTP or LLM node must not hold up the no-op behind it, and one partition carries many runs.
Offsets are committed in order nevertheless (``workers.offsets``): only up to the lowest
unfinished offset of each partition, after the task's outcome was acknowledged by Kafka.

Which task starts when is fair execution's (``workers.fair``): every task taken from Kafka is
offered to the process's dispatcher, where it may wait (its tenant has all its slots of the
type in use, its concurrency key is full, its rate limit empty) without holding up the tasks
of other tenants behind it in the partition. A waiting task counts as unfinished, so the
commit stops below it and a crash delivers it again: nothing taken is lost. The consumer
keeps fetching while tasks wait, up to a bound (``AOB_WORKERS_MAX_WAITING`` tasks or
``AOB_WORKERS_MAX_WAITING_BYTES``); past it, it pauses its partitions until the waiting set
shrinks again (``aob_workers_fetch_paused``). When a partition moves to another worker, its
waiting tasks are forgotten here (not run) and its running ones finish first.

Every record is done with once it is handled, whatever happened, so the offset moves on; the
one exception is an infrastructure fault (Kafka or the CAS unreachable): the offset is left
uncommitted and the task comes back. Holding any other record would gain nothing (a bug
fails the same way every time it meets the same record) and would hold back the commits of
every task behind it on the partition (many runs), to run them all again, side effects
included, at the next restart or rebalance.

- A bug met while handling a task: the executor fails its node with the reason (retryable,
  so the node's retry policy applies: ``workers.execute`` says why) and raises
  ``TaskCrashed``; the record is parked here in the dead-letter topic with the reason and
  where it came from (``aob-dlq-source``), for an operator to find the input that crashed
  the worker. Its run has gone on already, so sending the record again after a fix does
  nothing for that attempt (it was reported failed); it reproduces the bug.
- A record that cannot even be decoded into a task has no run to report to: it is parked
  only (the coordinator parks a record its decider fails on the same way,
  ``processors.coordinator``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from limits.concurrency_leases import ConcurrencyLeases
from limits.rate_buckets import RateBuckets
from schemas.codec import decode_task
from schemas.errors import PoisonRecord
from schemas.reports import reason_text
from schemas.tasks import NodeTask
from schemas.topics import TASK_TOPIC_PREFIX
from workers import metrics
from workers.errors import NodeError, TaskCrashed
from workers.execute import TaskExecutor, is_infrastructure_fault
from workers.fair.dispatch import FairDispatcher, FairSettings, LimitsSource, Work
from workers.offsets import OffsetTracker

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 32
COMMIT_COALESCE_S = 0.05  # gather commits of tasks finishing together into one request
FETCH_MAX_RECORDS = 200
PAUSED_POLL_MS = 100  # while paused, how often the bound is looked at again


class DeadLetters:
    """Where parked records go (``infra.bus.EventBus`` in production)."""

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, source: str
    ) -> object: ...


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: TypeConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._consumer.drain(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class TypeConsumer:
    """The consumer loop of one node type."""

    def __init__(
        self,
        node_type: str,
        *,
        bootstrap: str,
        executor: TaskExecutor,
        dead_letters: DeadLetters,
        dispatcher: FairDispatcher,
        group_prefix: str = "aob-workers-",
        topic_prefix: str = TASK_TOPIC_PREFIX,
    ) -> None:
        self.node_type = node_type
        self.topic = f"{topic_prefix}{node_type}"
        self._executor = executor
        self._dlq = dead_letters
        self._dispatcher = dispatcher
        self._paused = False
        self._offsets = OffsetTracker()
        self._running: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._commit_wanted = asyncio.Event()
        self._stopping = False
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"{group_prefix}{node_type}",
            client_id=f"aob-worker-{node_type}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # the 500 ms default is pure latency when the topic is idle
            max_poll_interval_ms=600_000,  # a rebalance waits for running tasks (drain)
        )

    async def run(self) -> None:
        self._consumer.subscribe([self.topic], listener=_Revocations(self))
        await self._consumer.start()
        committer = asyncio.create_task(self._commit_loop(), name=f"commit-{self.node_type}")
        try:
            while not self._stopping:
                self._keep_bound()
                timeout = PAUSED_POLL_MS if self._paused else 500
                batches = await self._consumer.getmany(
                    timeout_ms=timeout, max_records=FETCH_MAX_RECORDS
                )
                works = [
                    work
                    for tp, records in batches.items()
                    for record in records
                    if (work := self.taken(tp, record)) is not None
                ]
                if works:
                    await self._dispatcher.offer(works)
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer

    def stop(self) -> None:
        self._stopping = True

    def taken(self, tp: TopicPartition, record: ConsumerRecord) -> Work | None:
        """A record fetched: from now on it is unfinished (its offset holds the commit back).
        A task is returned for the dispatcher; a record that is no task is parked at once."""
        self._offsets.started(tp, record.offset)
        try:
            task = decode_task(record.value)
        except Exception as e:  # noqa: BLE001 - decoding is pure: it fails alike every time
            reason = (
                e.reason
                if isinstance(e, PoisonRecord)
                else f"task could not be decoded: {type(e).__name__}: {e}"
            )
            self._track(tp, asyncio.create_task(self._process(tp, record, None, poison=reason)))
            return None
        return Work(
            task=task,
            run=lambda refusal: self._process(tp, record, task, refusal=refusal),
            track=lambda started: self._track(tp, started),
            owner=self,
            partition=tp,
            size=len(record.value or b""),
        )

    def _track(self, tp: TopicPartition, started: asyncio.Task[None]) -> None:
        running = self._running.setdefault(tp, set())
        running.add(started)
        started.add_done_callback(running.discard)

    def _keep_bound(self) -> None:
        """Pause fetching while the process's waiting set is past its bound (module doc)."""
        if self._dispatcher.over_bound():
            assigned = self._consumer.assignment()
            if assigned:  # again after a rebalance: a new assignment is not paused
                self._consumer.pause(*assigned)
            if not self._paused:
                q = self._dispatcher.queue
                log.warning(
                    "%s: %d tasks (%d bytes) wait in this worker, past its bound: fetching "
                    "paused until they drain",
                    self.node_type,
                    q.waiting,
                    q.waiting_bytes,
                )
                self._paused = True
                metrics.FETCH_PAUSED.labels(self.node_type).set(1)
        elif self._paused:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
            metrics.FETCH_PAUSED.labels(self.node_type).set(0)

    def _mine(self, partitions: set[TopicPartition] | None = None) -> Callable[[Work], bool]:
        def which(work: Work) -> bool:
            return work.owner is self and (partitions is None or work.partition in partitions)

        return which

    async def close(self, grace_s: float = 30.0) -> None:
        """Forget what waits (delivered again to the next worker), let running tasks finish
        (at most ``grace_s``), commit, leave the group."""
        self._dispatcher.drop(self._mine())
        running = [t for tasks in self._running.values() for t in tasks]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace_s)
            for t in pending:  # redelivered to the next worker: at least once
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._dispatcher.drop(self._mine())  # any sent back to wait meanwhile
        await self._commit()
        await self._consumer.stop()

    async def drain(self, partitions: list[TopicPartition]) -> None:
        """Before a partition moves to another worker: forget its waiting tasks (the next
        owner runs them: their offsets hold the commit back), finish its running ones, and
        commit."""
        mine = self._mine(set(partitions))
        while True:  # a running task may go back to wait (a gate), and start again
            self._dispatcher.drop(mine)
            running = [t for tp in partitions for t in self._running.get(tp, ())]
            if not running:
                break
            await asyncio.gather(*running, return_exceptions=True)
        await self._commit()
        for tp in partitions:
            self._offsets.forget(tp)
            self._running.pop(tp, None)

    async def _process(
        self,
        tp: TopicPartition,
        record: ConsumerRecord,
        task: NodeTask | None,
        *,
        refusal: NodeError | None = None,
        poison: str | None = None,
    ) -> None:
        """Handle one record to its end: run the task (or fail its node with ``refusal``,
        or park the record that is no task), then mark its offset finished."""
        source = f"{tp.topic}:{tp.partition}:{record.offset}"
        started = time.perf_counter()
        metrics.IN_FLIGHT.labels(self.node_type).inc()
        outcome = "handled"
        try:
            if task is None:
                log.warning("poison task at %s: %s", source, poison)
                await self._park(record, poison or "not a task", source)
                outcome = "dead_lettered"
            elif refusal is not None:
                await self._executor.refuse(task, refusal)
            elif not await self._run(task, record, source):
                outcome = "dead_lettered"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:  # an infrastructure fault (or no dead-letter topic): comes back
            log.exception("task at %s was not handled; it will be delivered again", source)
            outcome = "retried"
            return
        finally:
            metrics.IN_FLIGHT.labels(self.node_type).dec()
            metrics.TASKS.labels(self.node_type, outcome).inc()
            metrics.TASK_SECONDS.labels(self.node_type).observe(time.perf_counter() - started)
        self._offsets.finished(tp, record.offset)
        self._commit_wanted.set()

    async def _run(self, task: NodeTask, record: ConsumerRecord, source: str) -> bool:
        """Execute ``task``; a bug parks its record in the dead-letter topic (module doc).
        False if it was parked."""
        try:
            await self._executor.run(task)
            return True
        except TaskCrashed as e:
            node = "its node was failed" if e.reported else "its node could not be failed"
            await self._park(record, f"the worker failed on the task ({node}): {e.reason}", source)
            return False
        except Exception as e:
            if is_infrastructure_fault(e):
                raise
            # The executor reports its own crashes; this is one around it: parked all the same.
            log.exception("task at %s crashed: dead-lettering it", source)
            reason = f"worker could not handle the task: {type(e).__name__}: {e}"
            await self._park(record, reason, source)
            return False

    async def _park(self, record: ConsumerRecord, reason: str, source: str) -> None:
        # The reason may quote a hostile value: made fit for a header as a NodeFailed's is.
        await self._dlq.dead_letter(record.key, record.value, reason_text(reason), source)

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_wanted.wait()
            await asyncio.sleep(COMMIT_COALESCE_S)
            self._commit_wanted.clear()
            await self._commit()

    async def _commit(self) -> None:
        offsets = self._offsets.to_commit()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:  # rebalance under way: redelivery is safe
            log.warning("commit of %s failed: %s", offsets, e)
            return
        self._offsets.committed(offsets)


async def serve(
    node_types: list[str],
    *,
    bootstrap: str,
    executor: TaskExecutor,
    dead_letters: DeadLetters,
    stop: asyncio.Event,
    concurrency: int = DEFAULT_CONCURRENCY,
    topic_prefix: str = TASK_TOPIC_PREFIX,
    group_prefix: str = "aob-workers-",
    fairness: Fairness | None = None,
) -> None:
    """Consume every type's topic until ``stop`` is set, then shut down cleanly.

    ``fairness`` gives the shared limits (PostgreSQL); without it every tenant has the
    default limits and keys and rate limits are not held (a warning says so)."""
    fair = fairness or Fairness()
    dispatcher = FairDispatcher(
        executor,
        worker=executor.worker_name,
        settings=replace(fair.settings, slots=concurrency),
        limits=fair.limits,
        leases=fair.leases,
        rates=fair.rates,
    )
    consumers = [
        TypeConsumer(
            t,
            bootstrap=bootstrap,
            executor=executor,
            dead_letters=dead_letters,
            dispatcher=dispatcher,
            group_prefix=group_prefix,
            topic_prefix=topic_prefix,
        )
        for t in node_types
    ]
    await dispatcher.start()
    loops = [asyncio.create_task(c.run(), name=f"worker-{c.node_type}") for c in consumers]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*loops, stopper], return_when=asyncio.FIRST_COMPLETED)
    for c in consumers:
        c.stop()
    dispatcher.closing()  # nothing new starts; what waits is delivered again to the next
    await asyncio.gather(*loops, return_exceptions=True)
    await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
    await dispatcher.stop()
    stopper.cancel()
    for loop in done:
        if loop is not stopper and loop.exception() is not None:
            raise loop.exception()  # type: ignore[misc]


@dataclass(frozen=True)
class Fairness:
    """What fair execution shares with other processes (``workers.fair``): each tenant's
    limits, the concurrency key leases and the rate limits, all in PostgreSQL."""

    limits: LimitsSource | None = None
    leases: ConcurrencyLeases | None = None
    rates: RateBuckets | None = None
    settings: FairSettings = field(default_factory=FairSettings)


def handler_types(handlers: Mapping[str, object], requested: str | None) -> list[str]:
    """The node types to serve: ``requested`` (comma-separated) or every type with a handler."""
    if not requested:
        return sorted(handlers)
    types = [t.strip() for t in requested.split(",") if t.strip()]
    unknown = [t for t in types if t not in handlers]
    if unknown:
        raise ValueError(
            f"no handler for {', '.join(unknown)} (have: {', '.join(sorted(handlers))})"
        )
    return types
