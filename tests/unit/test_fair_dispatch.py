"""Fair execution in the worker's consumer path (``workers.runtime`` + ``workers.fair``):
records taken from Kafka, offered, started in fair order through the gates, their offsets
committed only below the lowest task not finished, fetching paused past the bound, and the
run told once why a task waits.

No Kafka and no PostgreSQL here: the consumer is never started (its Kafka client is
replaced where the test needs its calls), the runs topic is ``RunLog``, and the shared
gates are in-memory ports with the same contract as ``limits.concurrency_leases`` and
``limits.rate_buckets`` (whose SQL the connected lane runs on a real server)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from limits.concurrency_leases import Lease
from limits.execution import ExecutionLimits, RateLimit
from limits.tenant_limits import DEFAULT_LIMITS, TenantLimits
from schemas.codec import encode_task
from schemas.events import NodeFailed, NodeQueued, NodeStarted, NodeSucceeded
from schemas.tasks import NodeTask
from schemas.workflow import ConcurrencyKey
from tests.worker_support import RunLog
from workers import metrics
from workers.execute import TaskExecutor
from workers.fair.dispatch import FairDispatcher, FairSettings, SteadyLimits
from workers.handlers.base import Job
from workers.runtime import TypeConsumer

TOPIC = "aob.tasks.http"


async def until(condition: Callable[[], bool], what: str = "the condition") -> None:
    """Poll until ``condition`` holds (no timing is asserted: the bound is only a guard)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} never came about")


class Target:
    """The far side of a slow http node: each run's call answers when the test says."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: set[str] = set()
        self.most = 0
        self._go: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def __call__(self, job: Job) -> Any:
        run = job.task.run_id
        self.started.append(run)
        self.running.add(run)
        self.most = max(self.most, len(self.running))
        try:
            await self._go[run].wait()
        finally:
            self.running.discard(run)
        return {"run": run}

    def answer(self, *runs: str) -> None:
        for run in runs:
            self._go[run].set()


class Limits:
    def __init__(self, **by_tenant: ExecutionLimits) -> None:
        self.by_tenant = by_tenant
        self.fail = False

    async def get(self, tenant: str) -> TenantLimits:
        if self.fail:
            raise OSError("the limits store is down")
        execution = self.by_tenant.get(tenant)
        return DEFAULT_LIMITS if execution is None else TenantLimits(execution=execution)


class MemoryLeases:
    """Slots of keys with the store's contract: ``acquire`` gives a slot below the limit or
    None; ``release`` frees it; ``faults`` makes the next acquires fail as a store would."""

    ttl_s = 30.0

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        self.most: dict[str, int] = defaultdict(int)
        self.faults = 0
        self.acquires = 0

    async def acquire(self, tenant: str, key: str, limit: int, holder: str) -> Lease | None:
        self.acquires += 1
        if self.faults:
            self.faults -= 1
            raise OSError("the lease store is down")
        slots = self.held[(tenant, key)]
        free = [s for s in range(limit) if s not in slots]
        if not free:
            return None
        slots[free[0]] = holder
        self.most[key] = max(self.most[key], len(slots))
        return Lease(tenant, key, free[0], holder)

    async def release(self, lease: Lease) -> None:
        slots = self.held[(lease.tenant, lease.key)]
        if slots.get(lease.slot) == lease.holder:
            del slots[lease.slot]

    async def renew(self, holders: list[str]) -> set[str]:
        return set(holders)

    async def sweep(self) -> None:
        return None


class ScriptedRates:
    """A rate limit that answers the waits it is given, then grants."""

    def __init__(self, *waits: float) -> None:
        self.waits = list(waits)
        self.takes: list[tuple[str, str]] = []

    async def take(self, tenant: str, name: str, limit: RateLimit) -> float:
        self.takes.append((tenant, name))
        return self.waits.pop(0) if self.waits else 0.0


class KafkaClient:
    """What the consumer calls on its Kafka client in these tests."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.paused_now: set[TopicPartition] = set()
        self.commits: list[dict[Any, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_now |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_now -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))


def task(
    run: str,
    tenant: str,
    *,
    concurrency: dict[str, Any] | None = None,
    rate_limit: str | None = None,
    customer: str = "c7",
) -> NodeTask:
    return NodeTask(
        task_id=f"t-{run}",
        run_id=run,
        tenant=tenant,
        node_id="fetch",
        node_type="http",
        attempt=1,
        input={"customer": customer},
        concurrency=ConcurrencyKey.model_validate(concurrency) if concurrency else None,
        rate_limit=rate_limit,
    )


class Worker:
    """A consumer of ``aob.tasks.http`` and its dispatcher, fed records by hand."""

    def __init__(
        self,
        limits: Limits | None = None,
        leases: MemoryLeases | None = None,
        rates: ScriptedRates | None = None,
        settings: FairSettings | None = None,
    ) -> None:
        self.target = Target()
        self.log = RunLog()
        self.executor = TaskExecutor(
            events=self.log, store=None, handlers={"http": self.target}, worker_name="w1"
        )
        self.dispatcher = FairDispatcher(
            self.executor,
            worker="w1",
            settings=settings or FairSettings(key_retry_s=60.0),
            limits=limits,
            leases=leases,  # type: ignore[arg-type]
            rates=rates,  # type: ignore[arg-type]
        )
        self.consumer = TypeConsumer(
            "http",
            bootstrap="localhost:1",  # never started: no connection is made
            executor=self.executor,
            dead_letters=SimpleNamespace(),
            dispatcher=self.dispatcher,
        )
        self.tp = TopicPartition(TOPIC, 0)
        self.kafka = KafkaClient({self.tp})
        self.consumer._consumer = self.kafka  # type: ignore[assignment]
        self.offset = 0

    async def fetch(self, *tasks: NodeTask) -> None:
        """As one ``getmany`` that returned ``tasks`` in topic order."""
        works = []
        for t in tasks:
            _, value, _ = encode_task(t)
            record = SimpleNamespace(key=t.run_id.encode(), value=value, offset=self.offset)
            self.offset += 1
            work = self.consumer.taken(self.tp, record)
            assert work is not None
            works.append(work)
        await self.dispatcher.offer(works)

    def committable(self) -> int | None:
        return self.consumer._offsets.to_commit().get(self.tp)

    def finished(self, run: str) -> bool:
        return any(
            isinstance(e, NodeSucceeded | NodeFailed) and e.aggregate_id == run
            for e in self.log.events
        )

    def queued(self) -> list[NodeQueued]:
        return [e for e in self.log.events if isinstance(e, NodeQueued)]

    async def settle(self) -> None:
        running = [t for ts in self.consumer._running.values() for t in ts]
        await asyncio.gather(*running, *self.dispatcher._telling)


def one_slot(tenant: str) -> Limits:
    return Limits(**{tenant: ExecutionLimits(concurrency={"*": 1})})


async def test_a_tenant_at_its_slots_waits_without_holding_up_the_next_tenant() -> None:
    w = Worker(one_slot("acme"))
    await w.fetch(task("a0", "acme"), task("a1", "acme"), task("b0", "beta"))
    await until(lambda: set(w.target.started) == {"a0", "b0"}, "a0 and b0 started")
    w.target.answer("b0")
    await until(lambda: w.finished("b0"), "b0 finished")
    assert w.target.started == ["a0", "b0"]  # a1 waits for acme's slot; b0 went past it
    assert w.committable() == 0  # a0 and a1 are not done: nothing past them is committed
    await until(lambda: bool(w.queued()), "a1's wait told")
    (told,) = w.queued()
    assert told.aggregate_id == "a1" and told.payload.waiting_for == "tenant_slots"
    assert told.payload.reason == "tenant acme has 1 of 1 http slots in use on this worker"
    assert told.payload.worker == "w1"
    w.target.answer("a0", "a1")
    await until(lambda: w.finished("a1"), "a1 finished")
    await w.settle()
    assert w.target.started == ["a0", "b0", "a1"]
    assert w.committable() == 3
    assert len(w.queued()) == 1  # told once


async def test_the_gauges_count_what_waits_by_reason_and_the_slots_in_use() -> None:
    w = Worker(one_slot("acme"))
    gauge = metrics.REGISTRY.get_sample_value
    await w.fetch(task("a0", "acme"), task("a1", "acme"), task("a2", "acme"))
    await until(lambda: w.target.started == ["a0"])
    w.dispatcher._gauge()
    waiting = {"node_type": "http", "waiting_for": "tenant_slots"}
    assert gauge("aob_workers_tasks_waiting", waiting) == 2
    assert gauge("aob_workers_slots_in_use", {"node_type": "http"}) == 1
    w.target.answer("a0", "a1", "a2")
    await until(lambda: w.finished("a2"))
    await w.settle()
    w.dispatcher._gauge()
    assert gauge("aob_workers_tasks_waiting", waiting) == 0
    assert gauge("aob_workers_slots_in_use", {"node_type": "http"}) == 0


async def test_a_partition_that_moves_commits_below_what_waited_and_does_not_run_it() -> None:
    w = Worker(one_slot("acme"))
    await w.fetch(task("a0", "acme"), task("a1", "acme"), task("b0", "beta"))
    await until(lambda: set(w.target.started) == {"a0", "b0"})
    w.target.answer("a0", "b0")
    await w.consumer.drain([w.tp])  # a rebalance (or a crash, which commits nothing)
    assert w.kafka.commits[-1] == {w.tp: 1}  # a1 (offset 1) is delivered again
    assert "a1" not in w.target.started
    assert list(w.dispatcher.queue.entries()) == []


async def test_past_the_bound_the_consumer_pauses_fetching_and_resumes_below_it() -> None:
    w = Worker(one_slot("acme"), settings=FairSettings(max_waiting=1))
    paused = metrics.REGISTRY.get_sample_value
    await w.fetch(task("a0", "acme"), task("a1", "acme"))
    w.consumer._keep_bound()
    assert w.kafka.paused_now == set()  # one waits: at the bound, not past it
    await w.fetch(task("a2", "acme"))
    w.consumer._keep_bound()
    assert w.kafka.paused_now == {w.tp}
    assert paused("aob_workers_fetch_paused", {"node_type": "http"}) == 1
    w.target.answer("a0", "a1", "a2")
    await until(lambda: w.finished("a2"))
    w.consumer._keep_bound()
    assert w.kafka.paused_now == set()
    assert paused("aob_workers_fetch_paused", {"node_type": "http"}) == 0


async def test_a_concurrency_key_runs_at_most_its_limit_while_other_keys_go_on() -> None:
    leases = MemoryLeases()
    w = Worker(leases=leases)
    key = {"key": "{{ input.customer }}", "limit": 2}
    await w.fetch(
        *(task(f"c7-{i}", "acme", concurrency=key) for i in range(3)),
        task("c8-0", "acme", concurrency=key, customer="c8"),
    )
    await until(lambda: len(w.target.started) == 3, "three started")
    assert sorted(w.target.started) == ["c7-0", "c7-1", "c8-0"]
    await until(lambda: bool(w.queued()))
    (told,) = w.queued()
    assert told.aggregate_id == "c7-2" and told.payload.waiting_for == "concurrency_key"
    assert told.payload.reason == "concurrency key 'c7': 2 of 2 running"
    # A slot given back in this process wakes the next at once (key_retry_s is 60 s here).
    w.target.answer("c7-0")
    await until(lambda: "c7-2" in w.target.started, "c7-2 started")
    w.target.answer("c7-1", "c7-2", "c8-0")
    await until(lambda: w.finished("c7-2"))
    await w.settle()
    assert leases.most == {"c7": 2, "c8": 1}
    assert leases.held == {("acme", "c7"): {}, ("acme", "c8"): {}}  # all given back
    assert w.committable() == 4 and len(w.queued()) == 1


async def test_a_key_that_does_not_render_fails_the_node_without_running_it() -> None:
    w = Worker(leases=MemoryLeases())
    broken = {"key": "{{ input.nobody.there }}", "limit": 1}
    await w.fetch(task("r0", "acme", concurrency=broken))
    await until(lambda: w.finished("r0"))
    await w.settle()
    (failed,) = w.log.outcomes
    assert isinstance(failed, NodeFailed) and not failed.payload.retryable
    assert "concurrency key: template error" in failed.payload.error
    assert w.target.started == [] and w.committable() == 1
    assert not any(isinstance(e, NodeStarted) for e in w.log.events)


async def test_a_lease_store_fault_makes_the_task_wait_and_try_again() -> None:
    leases = MemoryLeases()
    leases.faults = 1
    w = Worker(leases=leases, settings=FairSettings(store_retry_s=0.01))
    await w.fetch(task("r0", "acme", concurrency={"key": "k", "limit": 1}))
    await until(lambda: w.target.started == ["r0"])
    assert leases.acquires == 2
    w.target.answer("r0")
    await until(lambda: w.finished("r0"))


async def test_a_rate_limit_holds_a_task_until_it_has_a_call_and_says_how_long() -> None:
    rates = ScriptedRates(0.0, 0.05)
    limits = Limits(acme=ExecutionLimits(rate_limits={"openai": RateLimit(limit=1, per_seconds=1)}))
    w = Worker(limits, rates=rates)
    await w.fetch(task("r0", "acme", rate_limit="openai"), task("r1", "acme", rate_limit="openai"))
    await until(lambda: bool(w.queued()))
    (told,) = w.queued()
    assert told.aggregate_id == "r1" and told.payload.waiting_for == "rate_limit"
    assert told.payload.reason.startswith("rate limit openai: next call in ")
    await until(lambda: w.target.started == ["r0", "r1"], "r1 started once the call came")
    assert rates.takes == [("acme", "openai")] * 3
    w.target.answer("r0", "r1")
    await until(lambda: w.finished("r1"))


async def test_a_rate_limit_the_tenant_does_not_define_does_not_limit() -> None:
    rates = ScriptedRates(5.0)
    w = Worker(rates=rates)
    counted = metrics.REGISTRY.get_sample_value
    before = counted("aob_workers_undefined_rate_limits_total", {"node_type": "http"}) or 0
    await w.fetch(task("r0", "acme", rate_limit="nonesuch"))
    await until(lambda: w.target.started == ["r0"])
    assert rates.takes == []
    assert counted("aob_workers_undefined_rate_limits_total", {"node_type": "http"}) == before + 1
    w.target.answer("r0")
    await until(lambda: w.finished("r0"))


async def test_a_task_refused_by_its_rate_limit_gives_its_key_slot_back_while_it_waits() -> None:
    leases = MemoryLeases()
    rates = ScriptedRates(0.05)
    limits = Limits(acme=ExecutionLimits(rate_limits={"openai": RateLimit(limit=1, per_seconds=1)}))
    w = Worker(limits, leases=leases, rates=rates)
    seen: list[int] = []
    release = leases.release

    async def watched(lease: Lease) -> None:
        await release(lease)
        seen.append(len(leases.held[("acme", "k")]))

    leases.release = watched  # type: ignore[method-assign]
    await w.fetch(task("r0", "acme", concurrency={"key": "k", "limit": 1}, rate_limit="openai"))
    await until(lambda: w.target.started == ["r0"])
    assert seen == [0]  # given back once while it waited for its call
    w.target.answer("r0")
    await until(lambda: w.finished("r0"))
    await w.settle()
    assert seen == [0, 0] and leases.acquires == 2


async def test_limits_that_cannot_be_read_are_the_last_known() -> None:
    source = Limits(acme=ExecutionLimits(concurrency={"*": 3}))
    steady = SteadyLimits(source)
    assert (await steady.get("acme")).execution.concurrency == {"*": 3}
    source.fail = True
    assert (await steady.get("acme")).execution.concurrency == {"*": 3}
    assert await steady.get("never-read") == DEFAULT_LIMITS
