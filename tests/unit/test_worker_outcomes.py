"""Every task the executor runs ends in an outcome the log can carry: an output that breaks
the value rules, an exception with a hostile message, a bug in the worker, an event too
large for Kafka. Runs ``TaskExecutor`` against an in-memory log that encodes every event as
the bus does, so an event that could not be produced fails here too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import (
    ModelCalled,
    ModelCalledPayload,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    TokenUsage,
)
from schemas.position import Position
from schemas.reports import report
from schemas.tasks import NodeContext, NodeTask
from tests.worker_support import RunLog
from workers.errors import NodeError, TaskCrashed
from workers.execute import TaskExecutor
from workers.handlers import HANDLERS
from workers.handlers.base import Job
from workers.outputs import DEFAULT_MAX_OUTPUT_BYTES


class Blobs:
    def __init__(self, broken: bool = False) -> None:
        self.blobs: dict[str, bytes] = {}
        self.broken = broken

    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        ref = f"cas://sha256:{len(self.blobs):064x}"
        self.blobs[ref] = data
        return ref

    async def get_json(self, ref: str) -> Any:
        if self.broken:
            raise RuntimeError("a bug in reading")
        raise AssertionError("no upstream output is read here")


def task(node_type: str = "fetch", config: dict[str, Any] | None = None, **kw: Any) -> NodeTask:
    return NodeTask(
        task_id="task-1",
        run_id="run-1",
        tenant="acme",
        node_id="fetch",
        node_type=node_type,
        attempt=1,
        config=config or {},
        **kw,
    )


def executor(handler: Any, log: RunLog, store: Blobs | None = None, **kw: Any) -> TaskExecutor:
    return TaskExecutor(
        events=log,
        store=store or Blobs(),
        handlers={"fetch": handler, "transform": HANDLERS["transform"]},
        worker_name="test",
        max_backoff_s=0.001,
        **kw,
    )


def returning(value: Any) -> Any:
    async def handler(job: Job) -> Any:
        return value

    return handler


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def failure(log: RunLog) -> NodeFailed:
    (outcome,) = log.outcomes
    assert isinstance(outcome, NodeFailed), outcome
    encode_event(outcome)
    return outcome


BODY_WITH_NUL = {"body": {"items": [0, 1, 2, {"name": "a\x00b"}]}}


@pytest.mark.parametrize(
    ("output", "path", "words"),
    [
        (nested(300), "output" + "[0]" * 64, "nests deeper than 64 levels"),
        (BODY_WITH_NUL, "output.body.items[3].name", "NUL character"),
        ({"text": "a\ud800b"}, "output.text", "lone surrogate"),
        ({"score": float("nan")}, "output.score", "must be finite"),
        ({"n": 10**400}, "output.n", "401 digits"),
        ("x" * 20_000_000, "output", "20000000 characters; the limit is 1000000"),
    ],
)
async def test_an_output_that_breaks_the_value_rules_fails_its_node_with_the_path(
    output: Any, path: str, words: str
) -> None:
    log = RunLog()
    await executor(returning(output), log).run(task())  # nothing escapes
    failed = failure(log)
    assert not failed.payload.retryable
    assert failed.payload.error.startswith(
        f"node 'fetch' (fetch, attempt 1): output refused: {path}: "
    )
    assert words in failed.payload.error


async def test_an_output_larger_than_the_limit_fails_its_node() -> None:
    # Eleven strings of a million characters: each within the rules, too large together.
    log = RunLog()
    await executor(returning(["x" * 1_000_000] * 11), log).run(task())
    failed = failure(log)
    assert not failed.payload.retryable
    assert f"the limit is {DEFAULT_MAX_OUTPUT_BYTES} (AOB_WORKERS_MAX_OUTPUT_BYTES)" in (
        failed.payload.error
    )


async def test_the_output_limit_is_a_setting() -> None:
    log = RunLog()
    await executor(returning("x" * 2000), log, max_output_bytes=1000).run(task())
    assert "2002 bytes of JSON; the limit is 1000" in failure(log).payload.error


async def test_a_transform_whose_template_makes_infinity_fails_with_the_path() -> None:
    log = RunLog()
    config = {"output": {"big": "{{ 1e308 * 10 }}"}}
    await executor(returning(None), log).run(task("transform", config))
    assert "output.big: numbers must be finite" in failure(log).payload.error


@pytest.mark.parametrize("message", ["a NUL \x00 here", "a lone \ud800 surrogate"])
async def test_a_failure_whose_message_quotes_a_hostile_value_is_still_reported(
    message: str,
) -> None:
    async def handler(job: Job) -> Any:
        raise NodeError(message, retryable=True)

    log = RunLog()
    await executor(handler, log).run(task())
    error = failure(log).payload.error
    assert "\x00" not in error and "\ud800" not in error
    assert "\ufffd" in error


async def test_a_bug_around_the_task_fails_its_node_retryably_and_is_raised_for_parking() -> None:
    log = RunLog()
    upstream = {"up": NodeContext(status="SUCCEEDED", output_ref="cas://sha256:" + "0" * 64)}
    run = executor(returning({}), log, Blobs(broken=True))
    with pytest.raises(TaskCrashed) as crashed:
        await run.run(task(nodes=upstream))
    assert crashed.value.reported
    failed = failure(log)
    assert failed.payload.retryable  # the node's retry policy decides (workers.execute)
    assert "the worker failed on this task: RuntimeError: a bug in reading" in (
        failed.payload.error
    )
    # Its outcome is in the log: a copy of the task is not run again.
    await run.run(task(nodes=upstream))
    assert run.duplicates_skipped == 1


async def test_a_bug_whose_message_is_hostile_is_reported_all_the_same() -> None:
    class Hostile(Blobs):
        async def get_json(self, ref: str) -> Any:
            raise RuntimeError("\x00\ud800")

    log = RunLog()
    upstream = {"up": NodeContext(status="SUCCEEDED", output_ref="cas://sha256:" + "0" * 64)}
    with pytest.raises(TaskCrashed) as crashed:
        await executor(returning({}), log, Hostile()).run(task(nodes=upstream))
    assert crashed.value.reported
    assert failure(log).payload.error.endswith("RuntimeError: \ufffd\ufffd")


async def calling_a_model(job: Job) -> Any:
    """A handler that reports one model call, then returns ``{}``."""
    called = ModelCalledPayload(
        node_id=job.task.node_id, attempt=1, turn=1, model="m", usage=TokenUsage()
    )
    await job.emit(report(ModelCalled, job.task, called, "model_called", "1"))
    return {}


async def test_an_event_too_large_for_kafka_fails_the_node_instead_of_being_retried() -> None:
    log = RunLog(too_large=ModelCalled)
    await executor(calling_a_model, log).run(task())
    assert len(log.refused) == 1  # tried once: it is as large on every try
    assert "MessageSizeTooLargeError" in failure(log).payload.error


class SlowAcks(RunLog):
    """A log whose broker holds NodeStarted's acknowledgement until ``release`` is set;
    the other events are acknowledged at once."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def append(self, topic: str, event: Event) -> Position:
        position = await super().append(topic, event)
        if isinstance(event, NodeStarted):
            await self.release.wait()
        return position


async def test_the_outcome_is_sent_while_the_start_is_acknowledged_and_waited_for() -> None:
    log = SlowAcks()
    attempt = executor(returning({"ok": 1}), log, report_start_after_s=0)  # a start on its own
    run = asyncio.ensure_future(attempt.run(task()))
    for _ in range(100):  # the handler runs and its outcome is sent before the start's ack
        if log.outcomes:
            break
        await asyncio.sleep(0)
    assert [type(e) for e in log.events] == [NodeStarted, NodeSucceeded]
    assert not run.done(), "the attempt ended before its start was acknowledged"
    log.release.set()
    await asyncio.wait_for(run, 5)


async def test_a_start_the_broker_refuses_crashes_the_task_as_before() -> None:
    """A start refused for good is a fault met on the task, as when it was awaited first."""

    class Refusing(RunLog):
        async def append(self, topic: str, event: Event) -> Position:
            if isinstance(event, NodeStarted):
                raise MessageSizeTooLargeError("the start is refused")
            return await super().append(topic, event)

    with pytest.raises(TaskCrashed, match="the start is refused"):
        await executor(returning({"ok": 1}), Refusing(), report_start_after_s=0).run(task())
