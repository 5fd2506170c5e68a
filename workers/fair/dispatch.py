"""The dispatcher: starts the tasks a worker process has taken, in the queue's fair order
(``workers.fair.queue``), through the gates shared with other processes.

Each consumer offers what it fetched (``offer``); the dispatcher starts what the queue lets
start, each in an asyncio task of its own that first passes the task's gates and then runs
it (``Work.run``, the consumer's handling: executor, outcome, offset):

1. the concurrency key, rendered when the task is offered (``TaskExecutor.concurrency_key``),
   so that the tasks of one key wait and start in topic order; a key that does not render
   fails the node at once (``Work.run`` is given the error instead of running the task).
   Then a lease on one of the key's slots (``limits.concurrency_leases``), renewed while the
   attempt runs and given back when it ends;
2. one call from its named rate limit (``limits.rate_buckets``), if its tenant defines it.
   A name the tenant does not define does not limit the node: limits are set per tenant,
   apart from workflows, and a tenant that has not set one runs unbounded as a tenant with
   no limits document runs on the defaults (counted in ``aob_workers_undefined_rate_limits``
   and logged once).

Key before rate: a call taken from the rate limit by a task that then found its key full
would be wasted. A task refused by its rate limit gives its key's slot back while it waits.

A gate that refuses sends the task back to the queue, parked on the gate, its slot free;
the gate is tried again when the rate limit says, after ``key_retry_s`` for a key, or at
once when a task of this process gives that key's slot back. When a task starts waiting
for one of its tenant's limits (its slots of the type, its key, its rate limit), the run is
told once per kind of limit (``run.node_queued``, with the limit's numbers): GraphQL shows
it on the SCHEDULED node. Waiting for the process's own slots is not told: it is the
ordinary queue, as a task waiting in Kafka is.

Attempts that wait have no deadline (``run_model.timers``: an attempt's time limit counts
from its ``run.node_started``), so waiting here does not time them out.

If PostgreSQL cannot be reached: a tenant's limits are those it last read (the defaults if
it never could); a task with a key or a rate limit waits and tries again
(``store_retry_s``): a bound shared with other processes cannot be checked alone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from limits.concurrency_leases import ConcurrencyLeases, Lease
from limits.execution import RateLimit
from limits.rate_buckets import RateBuckets
from limits.tenant_limits import DEFAULT_LIMITS, TenantLimits
from schemas.events import WaitingFor
from schemas.tasks import NodeTask
from workers import metrics
from workers.errors import NodeError
from workers.fair import reasons
from workers.fair.queue import Entry, FairQueue, Gate, Probe, key_gate, rate_gate

log = logging.getLogger(__name__)


class LimitsSource(Protocol):
    """Where a tenant's limits are read (``limits.store.LimitsStore``)."""

    async def get(self, tenant: str) -> TenantLimits: ...


class FairExecutor(Protocol):
    """What the dispatcher asks of the executor (``workers.execute.TaskExecutor``)."""

    async def concurrency_key(self, task: NodeTask) -> str: ...
    async def report_queued(self, task: NodeTask, waiting_for: WaitingFor, reason: str) -> None: ...


@dataclass(frozen=True)
class FairSettings:
    slots: int = 32
    max_waiting: int = 10_000
    max_waiting_bytes: int = 256 * 1024 * 1024
    key_retry_s: float = 1.0
    store_retry_s: float = 1.0
    census_every_s: float = 1.0
    sweep_every_s: float = 600.0


@dataclass(eq=False)
class Work:
    """One task taken from Kafka, as the dispatcher holds it."""

    task: NodeTask
    # Handles the task (or, given an error, fails its node without running it).
    run: Callable[[NodeError | None], Coroutine[Any, Any, None]]
    # Told of the asyncio task that starts it, so that the consumer can wait for it.
    track: Callable[[asyncio.Task[None]], None]
    owner: object  # the consumer that took it, and from which partition: what ``drop`` picks
    partition: Hashable = None
    size: int = 0
    rate: RateLimit | None = None
    key: str | None = None
    lease: Lease | None = None


class SteadyLimits:
    """A tenant's limits as the store says; while it cannot be read, as it last said (the
    defaults if it never could): a worker goes on without PostgreSQL for what is its own."""

    MAX_REMEMBERED = 100_000

    def __init__(self, source: LimitsSource | None) -> None:
        self._source = source
        self._last: dict[str, TenantLimits] = {}

    async def get(self, tenant: str) -> TenantLimits:
        if self._source is None:
            return DEFAULT_LIMITS
        try:
            limits = await self._source.get(tenant)
        except Exception as e:  # noqa: BLE001 - any fault of the store: the last known limits
            metrics.LIMIT_FAULTS.labels("limits").inc()
            log.warning(
                "limits of tenant %s could not be read (%s): using the last known", tenant, e
            )
            return self._last.get(tenant, DEFAULT_LIMITS)
        if len(self._last) > self.MAX_REMEMBERED:
            self._last.clear()
        self._last[tenant] = limits
        return limits


class FairDispatcher:
    def __init__(
        self,
        executor: FairExecutor,
        *,
        worker: str,
        settings: FairSettings | None = None,
        limits: LimitsSource | None = None,
        leases: ConcurrencyLeases | None = None,
        rates: RateBuckets | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or FairSettings()
        self._executor = executor
        self._worker = worker
        self._limits = SteadyLimits(limits)
        self._leases = leases
        self._rates = rates
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self.queue: FairQueue[Work] = FairQueue(
            self.settings.slots,
            max_waiting=self.settings.max_waiting,
            max_waiting_bytes=self.settings.max_waiting_bytes,
        )
        self._held: dict[str, Lease] = {}  # holder -> lease, renewed together
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._closing = False
        self._background: list[asyncio.Task[None]] = []
        self._telling: set[asyncio.Task[None]] = set()
        self._warned: set[tuple[str, ...]] = set()
        self._gauged: set[tuple[str, str]] = set()
        self._gauged_types: set[str] = set()
        metrics.SLOTS.set(self.settings.slots)

    # --- life ------------------------------------------------------------------------

    async def start(self) -> None:
        self._background.append(asyncio.create_task(self._census_loop(), name="fair-census"))
        if self._leases is not None:
            self._background.append(asyncio.create_task(self._lease_loop(), name="fair-leases"))

    def closing(self) -> None:
        """Start nothing new (the worker is stopping): what waits stays for the next one."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def stop(self) -> None:
        self.closing()
        for task in [*self._background, *self._telling]:
            task.cancel()
        await asyncio.gather(*self._background, *self._telling, return_exceptions=True)
        self._background.clear()

    # --- what the consumers do -------------------------------------------------------

    async def offer(self, works: Sequence[Work]) -> None:
        """Queue ``works`` (in topic order), start what may start, tell what waits."""
        tenants = list({w.task.tenant for w in works})
        found = await asyncio.gather(*(self._limits.get(t) for t in tenants))
        limits = dict(zip(tenants, found, strict=True))
        refused = await self._render_keys(works)
        offered = []
        for work in works:
            task = work.task
            if work in refused:  # its key does not render: it fails now, in no queue
                self._refuse(work, refused[work])
                continue
            execution = limits[task.tenant].execution
            gates: tuple[Gate, ...] = ()
            if work.key is not None:
                gates = (key_gate(task.tenant, work.key),)
            if task.rate_limit is not None:
                work.rate = execution.rate_limits.get(task.rate_limit)
                if work.rate is None:
                    self._undefined_rate_limit(task)
                elif self._rates is not None:
                    gates = (*gates, rate_gate(task.tenant, task.rate_limit))
            offered.append(
                self.queue.offer(
                    task.tenant,
                    task.node_type,
                    work,
                    cap=execution.concurrency_of(task.node_type),
                    gates=gates,
                    size=work.size,
                )
            )
        self._pump()
        now = self._clock()
        for entry in offered:
            self._tell(entry, now)

    async def _render_keys(self, works: Sequence[Work]) -> dict[Work, NodeError]:
        """Render the concurrency keys of ``works`` (together); those that fail, and why."""
        keyed = [w for w in works if w.task.concurrency is not None and w.key is None]
        if keyed and self._leases is None:
            self._warn_once(("no-leases",), "this worker has no lease store: keys are not held")
            return {}
        found = await asyncio.gather(
            *(self._executor.concurrency_key(w.task) for w in keyed), return_exceptions=True
        )
        refused: dict[Work, NodeError] = {}
        for work, key in zip(keyed, found, strict=True):
            if isinstance(key, str):
                work.key = key
            elif isinstance(key, NodeError):
                refused[work] = key
            elif isinstance(key, Exception):  # a bug around rendering: the node fails
                log.error("task %s: its key could not be rendered", work.task.task_id, exc_info=key)
                what = f"concurrency key: could not be rendered: {type(key).__name__}: {key}"
                refused[work] = NodeError(what, retryable=True)
            else:
                raise key  # cancelled
        return refused

    def _refuse(self, work: Work, error: NodeError) -> None:
        work.track(asyncio.create_task(work.run(error), name=f"refuse-{work.task.task_id}"))

    def drop(self, which: Callable[[Work], bool]) -> int:
        """Forget the waiting tasks ``which`` picks (their partition moved): not run here."""
        return len(self.queue.drop(which))

    def over_bound(self) -> bool:
        return self.queue.over_bound()

    # --- starting --------------------------------------------------------------------

    def _pump(self) -> None:
        if self._closing:
            return
        now = self._clock()
        while (entry := self.queue.take(now)) is not None:
            started = asyncio.create_task(
                self._go(entry), name=f"task-{entry.payload.task.task_id}"
            )
            entry.payload.track(started)
        for entry in self.queue.newly_parked():
            self._tell(entry, now)
        self._arm(now)

    def _arm(self, now: float) -> None:
        """Pump again when the next closed gate opens."""
        wake = self.queue.next_wake()
        if wake is None or (self._timer is not None and self._timer_at <= wake):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().call_later(max(wake - now, 0.0), self._woken)

    def _woken(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._pump()

    async def _go(self, entry: Entry[Work]) -> None:
        work = entry.payload
        try:
            passed = await self._pass(entry)
        except BaseException:  # cancelled (the worker stops) or a bug: nothing is kept
            await self._give_back(work)
            self.queue.finished(entry)  # nothing if it went back to waiting
            self._pump()
            raise
        if not passed:
            return  # back to waiting: whatever it holds now is another start's
        try:
            self.queue.admitted(entry)
            self._pump()  # its gates may let the next one try
            await work.run(None)
        finally:
            await self._give_back(work)
            self.queue.finished(entry)
            self._pump()

    async def _pass(self, entry: Entry[Work]) -> bool:
        """Whether ``entry`` passed its gates (key, then rate); if not, it waits again."""
        work, task = entry.payload, entry.payload.task
        spec = task.concurrency
        if spec is not None and work.key is not None and self._leases is not None:
            gate = key_gate(task.tenant, work.key)
            if self.queue.learned(entry, gate, self._clock()) is not Probe.OPEN:
                self._pump()
                return False
            holder = f"{self._worker}/{task.task_id}/{secrets.token_hex(4)}"
            try:
                work.lease = await self._leases.acquire(task.tenant, work.key, spec.limit, holder)
            except Exception as e:  # noqa: BLE001 - the store's fault: wait and try again
                self._fault("lease", e)
                why = reasons.store_unreachable(f"concurrency key {reasons.shown_key(work.key)}")
                return self._hold(entry, gate, self.settings.store_retry_s, why)
            if work.lease is None:
                why = reasons.key_full(work.key, spec.limit)
                return self._hold(entry, gate, self.settings.key_retry_s, why)
            self._held[work.lease.holder] = work.lease
        if work.rate is not None and self._rates is not None and task.rate_limit is not None:
            gate = rate_gate(task.tenant, task.rate_limit)
            try:
                wait = await self._rates.take(task.tenant, task.rate_limit, work.rate)
            except Exception as e:  # noqa: BLE001 - the store's fault: wait and try again
                self._fault("rate", e)
                wait = self.settings.store_retry_s
            if wait > 0:
                await self._give_back(work)  # its key's slot is not held while it waits
                return self._hold(entry, gate, wait, None)
        return True

    def _hold(self, entry: Entry[Work], gate: Gate, wait_s: float, reason: str | None) -> bool:
        self.queue.hold(entry, gate, self._clock() + wait_s, reason)
        self._pump()
        return False

    async def _give_back(self, work: Work) -> None:
        lease, work.lease = work.lease, None
        if lease is None or self._leases is None:
            return
        self._held.pop(lease.holder, None)
        try:
            await self._leases.release(lease)
        except Exception as e:  # noqa: BLE001 - it expires by itself within the lease's ttl
            self._fault("release", e)
        self.queue.open(key_gate(lease.tenant, lease.key), self._clock())

    # --- telling ---------------------------------------------------------------------

    def _tell(self, entry: Entry[Work], now: float) -> None:
        """Append ``run.node_queued`` if ``entry`` now waits for a limit not told yet."""
        wait = self.queue.why(entry, now)
        if wait is None or wait.waiting_for == "worker_slots":
            return
        if wait.waiting_for in entry.announced:
            return
        entry.announced.add(wait.waiting_for)
        task = entry.payload.task
        metrics.TASKS_QUEUED.labels(task.node_type, wait.waiting_for).inc()
        kind = cast(WaitingFor, wait.waiting_for)
        telling = asyncio.create_task(self._report(task, kind, wait.reason))
        self._telling.add(telling)
        telling.add_done_callback(self._telling.discard)

    async def _report(self, task: NodeTask, waiting_for: WaitingFor, reason: str) -> None:
        try:
            await self._executor.report_queued(task, waiting_for, reason)
        except Exception as e:  # noqa: BLE001 - only informative: the task waits all the same
            log.warning("could not tell that task %s waits (%s): %s", task.task_id, reason, e)

    # --- background ------------------------------------------------------------------

    async def _census_loop(self) -> None:
        """Every ``census_every_s``: waiting lanes read their tenant's limits again (a cap
        raised frees them), and the gauges are set."""
        while True:
            await asyncio.sleep(self.settings.census_every_s)
            for tenant, node_type in self.queue.waiting_tenants():
                limits = await self._limits.get(tenant)
                self.queue.set_cap(tenant, node_type, limits.execution.concurrency_of(node_type))
            self._pump()
            self._gauge()

    def _gauge(self) -> None:
        census = self.queue.census()
        for labels in self._gauged - set(census):
            metrics.TASKS_WAITING.labels(*labels).set(0)
        for labels, count in census.items():
            metrics.TASKS_WAITING.labels(*labels).set(count)
        self._gauged = set(census)
        running = self.queue.running_by_type()
        for node_type in self._gauged_types - set(running):
            metrics.SLOTS_IN_USE.labels(node_type).set(0)
        for node_type, count in running.items():
            metrics.SLOTS_IN_USE.labels(node_type).set(count)
        self._gauged_types = set(running)

    async def _lease_loop(self) -> None:
        """Renew every held lease together, every third of their time to live."""
        assert self._leases is not None
        leases = self._leases
        since_sweep = 0.0
        every = leases.ttl_s / 3
        while True:
            await asyncio.sleep(every)
            since_sweep += every
            holders = list(self._held)
            try:
                if holders:
                    kept = await leases.renew(holders)
                    lost = [h for h in holders if h not in kept and h in self._held]
                    if lost:
                        metrics.LEASES_LOST.inc(len(lost))
                        log.error("concurrency key leases lost (expired, taken over): %s", lost)
                if since_sweep >= self.settings.sweep_every_s:
                    since_sweep = 0.0
                    await leases.sweep()
            except Exception as e:  # noqa: BLE001 - tried again at the next turn
                self._fault("renew", e)

    def _fault(self, what: str, error: Exception) -> None:
        metrics.LIMIT_FAULTS.labels(what).inc()
        log.warning("the limits store failed (%s): %s", what, error)

    def _undefined_rate_limit(self, task: NodeTask) -> None:
        metrics.UNDEFINED_RATE_LIMITS.labels(task.node_type).inc()
        self._warn_once(
            ("rate", task.tenant, task.rate_limit or ""),
            f"tenant {task.tenant} defines no rate limit {task.rate_limit!r}: "
            f"node {task.node_id!r} is not limited by it",
        )

    def _warn_once(self, key: tuple[str, ...], message: str) -> None:
        if key in self._warned:
            return
        if len(self._warned) > 10_000:
            self._warned.clear()
        self._warned.add(key)
        log.warning("%s", message)
