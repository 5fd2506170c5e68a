"""One policy for a bug met while handling a record, in the coordinator and in the workers:
the record is parked in the dead-letter topic with the reason and where it came from, and the
consumer goes on (see ``processors.coordinator`` and ``workers.runtime``); the coordinator
also fails the run, and a worker first fails the task's node with the reason, so that no run
hangs. Infrastructure faults are not bugs: a worker leaves their offset uncommitted, so the
task comes back."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from processors import coordinator as coordinator_module
from processors.config import CoordinatorConfig
from processors.coordinator import Coordinator, partition_marker
from processors.stored import Finished, decode
from run_model import RunStatus
from run_model.testing import build_ir, run_submitted
from schemas.codec import decode_event, encode_event, encode_task
from schemas.events import NodeFailed, RunFailed
from schemas.tasks import NodeContext, NodeTask
from tests.worker_support import RunLog
from workers.execute import TaskExecutor
from workers.fair.dispatch import FairDispatcher
from workers.runtime import TypeConsumer


class Parked:
    """The dead-letter topic, as the worker runtime and the coordinator's producer see it."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, str, str]] = []

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, source: str
    ) -> None:
        self.records.append((key, value, reason, source))

    async def send(self, topic: str, key: Any, value: Any, p: Any, t: Any, headers: Any) -> Any:
        found = dict(headers)
        self.records.append((key, value, found.get("aob-dlq-reason", b"").decode(), topic))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_bug_in_the_decider_parks_the_record_fails_the_run_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_step(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(coordinator_module, "step", broken_step)
    dlq = Parked()
    table: dict[bytes, bytes] = {partition_marker(0): b"0"}
    parts: Any = SimpleNamespace(app=SimpleNamespace(producer=dlq), table=table, runs_topic=None)
    coordinator = Coordinator(parts, CoordinatorConfig())
    key, value, _ = encode_event(run_submitted("run-bug", build_ir({"a": "noop"}, [])))
    await coordinator.handle(key, value, (0, 0))
    dlq_topic = coordinator.config.dlq_topic
    ((parked_key, parked_value, reason, _),) = [r for r in dlq.records if r[3] == dlq_topic]
    assert (parked_key, parked_value) == (key, value)
    assert "could not decide" in reason and "a bug" in reason
    (failure,) = [decode_event(r[1]) for r in dlq.records if r[3] != dlq_topic]
    assert isinstance(failure, RunFailed) and "a bug" in failure.payload.reason
    assert decode(b"run-bug", table[b"run-bug"]) == Finished(RunStatus.FAILED)
    assert table[partition_marker(0)] == b"1"  # handled: the next record is due


class Executor:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def run(self, task: NodeTask) -> None:
        raise self.error


def node_task() -> NodeTask:
    ir = build_ir({"a": "noop"}, [])
    return NodeTask(
        task_id="t-1",
        run_id="run-bug",
        tenant="acme",
        node_id="a",
        node_type="noop",
        attempt=1,
        config={},
        input=None,
        nodes={"up": NodeContext(status="SUCCEEDED", output_ref="cas://sha256:" + "0" * 64)},
        scheduled_at=run_submitted("run-bug", ir).occurred_at,
        version=ir.version,
    )


def task_record(offset: int, value: bytes | None = None) -> Any:
    key, encoded, _ = encode_task(node_task())
    return SimpleNamespace(key=key, value=encoded if value is None else value, offset=offset)


async def process(executor: Any, record: Any = None) -> tuple[Parked, dict[Any, int]]:
    """The record through the consumer's path: taken, offered, run, its offset finished."""
    dlq = Parked()
    consumer = TypeConsumer(
        "noop",
        bootstrap="localhost:1",  # never started: no connection is made
        executor=executor,
        dead_letters=dlq,
        dispatcher=FairDispatcher(executor, worker="test"),
    )
    tp = TopicPartition(consumer.topic, 0)
    work = consumer.taken(tp, record or task_record(7))
    if work is not None:
        await consumer._dispatcher.offer([work])
    await asyncio.gather(*consumer._running[tp])
    return dlq, consumer._offsets.to_commit()


async def test_a_bug_in_a_worker_parks_the_task_and_its_offset_is_committed() -> None:
    dlq, to_commit = await process(Executor(RuntimeError("a bug")))
    ((_, _, reason, source),) = dlq.records
    assert "a bug" in reason and source == "aob.tasks.noop:0:7"
    assert list(to_commit.values()) == [8]  # the next record to consume: past this one


async def test_an_infrastructure_fault_in_a_worker_leaves_the_offset_uncommitted() -> None:
    dlq, to_commit = await process(Executor(KafkaConnectionError("down")))
    assert dlq.records == []
    assert list(to_commit.values()) == [7]  # the commit stops at this record: it comes back


class BuggyStore:
    """A CAS client with a bug: reading the upstream output raises, with a hostile message."""

    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        raise AssertionError("nothing is stored here")

    async def get_json(self, ref: str) -> Any:
        raise RuntimeError("a bug near \x00 and \ud800")


async def noop(job: Any) -> Any:
    return {}


async def test_a_bug_in_a_worker_fails_the_node_with_the_reason_and_parks_the_task() -> None:
    log = RunLog()
    executor = TaskExecutor(
        events=log, store=BuggyStore(), handlers={"noop": noop}, worker_name="test"
    )
    dlq, to_commit = await process(executor)
    failed = log.outcomes
    assert [type(e) for e in failed] == [NodeFailed]
    assert failed[0].payload.retryable  # the node's retry policy decides (workers.execute)
    assert "the worker failed on this task: RuntimeError: a bug near" in failed[0].payload.error
    ((key, value, reason, source),) = dlq.records
    assert (key, value) == (task_record(7).key, task_record(7).value)
    assert source == "aob.tasks.noop:0:7"
    assert "its node was failed" in reason and "a bug near" in reason
    reason.encode()  # a header: no lone surrogate left in it
    assert "\x00" not in reason
    assert list(to_commit.values()) == [8]


async def test_a_task_too_deep_to_decode_is_parked_and_its_offset_committed() -> None:
    deep = b'{"task_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    dlq, to_commit = await process(Executor(AssertionError("never run")), task_record(7, deep))
    ((_, value, reason, _),) = dlq.records
    assert value == deep and "nested too deep to read" in reason  # a poison record (codec)
    assert list(to_commit.values()) == [8]
