"""Off the happy path, against a real coordinator process and real Kafka: retries with
backoff, attempts that never answer, cancellation with work in flight, unknown node types.

The test plays the workers (``FakeWorker`` with a scripted answer per attempt) so that it can
fail, stay silent, or answer late on purpose; what is checked is what the coordinator appends
to the run's stream.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from run_model.testing import build_ir, cancel_requested, failed, started, succeeded
from schemas.envelope import Event
from schemas.events import (
    NodeFailed,
    NodeRetryPlanned,
    NodeScheduled,
    NodeSkipped,
    NodeStarted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunWarning,
    TimerFired,
)
from schemas.tasks import NodeTask
from tests.connected.processors.conftest import Isolated
from tests.connected.processors.harness import (
    FakeWorker,
    RunLog,
    append,
    committed_past,
    of_type,
    submit,
)
from tests.helpers import eventually

pytestmark = pytest.mark.connected


def new_run() -> str:
    return f"run-{uuid.uuid4()}"


async def until_finished(log: RunLog, run_id: str, kind: type[Event], timeout: float = 60) -> None:
    def finished() -> None:
        assert of_type(log.events(run_id), kind), [e.type for e in log.events(run_id)]

    await eventually(finished, timeout=timeout)


async def test_retry_waits_for_its_backoff_then_succeeds(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = new_run()
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")], max_attempts=3, backoff_s=1.0)

    def answer(task: NodeTask) -> list[Event]:
        if task.node_id == "a" and task.attempt == 1:
            return [started(task), failed(task, "connection reset", retryable=True)]
        return [started(task), succeeded(task, {"attempt": task.attempt})]

    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}, answer):
        await submit(isolated, producer, run_id, ir)
        await until_finished(log, run_id, RunCompleted)

    events = log.events(run_id)
    (plan,) = of_type(events, NodeRetryPlanned, "a")
    assert plan.payload.attempt == 2
    assert 0.5 <= plan.payload.delay_s <= 1.0  # backoff_s with equal jitter
    (failure,) = of_type(events, NodeFailed, "a")
    assert plan.causation_id == failure.event_id
    (fired,) = {e.event_id: e for e in of_type(events, TimerFired, "a")}.values()
    assert (fired.payload.kind, fired.payload.attempt) == ("retry", 2)
    retry = [e for e in of_type(events, NodeScheduled, "a") if e.payload.attempt == 2]
    assert len(retry) == 1
    assert retry[0].causation_id == fired.event_id
    # Not a speed check: the retry must not start before its moment.
    assert retry[0].occurred_at >= plan.payload.due_at
    assert of_type(events, RunCompleted)[0].payload.output == {"b": {"attempt": 1}}


async def test_attempt_that_never_answers_times_out_and_the_retry_completes_the_run(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = new_run()
    ir = build_ir({"a": "noop"}, [], max_attempts=2, timeout_s=1.0)

    def answer(task: NodeTask) -> list[Event]:
        if task.attempt == 1:
            return [started(task)]  # and then nothing: a worker that hung or lost its answer
        return [started(task), succeeded(task, {"attempt": task.attempt})]

    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}, answer):
        await submit(isolated, producer, run_id, ir)
        await until_finished(log, run_id, RunCompleted)

    events = log.events(run_id)
    (timed_out,) = {e.event_id: e for e in of_type(events, NodeFailed, "a")}.values()
    assert timed_out.actor.id == "coordinator"
    assert timed_out.payload.attempt == 1
    assert timed_out.payload.error == "timed out: attempt 1 gave no answer within 1.5s"
    first_start = of_type(events, NodeStarted, "a")[0]
    assert (timed_out.occurred_at - first_start.occurred_at).total_seconds() >= 1.5
    assert sorted({e.payload.attempt for e in of_type(events, NodeScheduled, "a")}) == [1, 2]


async def test_last_attempt_timing_out_fails_the_run_with_the_reason(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = new_run()
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")], max_attempts=1, timeout_s=0.5)

    def answer(task: NodeTask) -> list[Event]:
        return [started(task)]

    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}, answer):
        await submit(isolated, producer, run_id, ir)
        await until_finished(log, run_id, RunFailed)

    events = log.events(run_id)
    (run_failed,) = of_type(events, RunFailed)
    assert run_failed.payload.node_id == "a"
    assert run_failed.payload.reason == (
        "node 'a' failed in attempt 1: timed out: attempt 1 gave no answer within 1s"
    )
    assert not of_type(events, NodeScheduled, "b")


async def test_cancel_abandons_work_in_flight_and_nothing_more_is_scheduled(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = new_run()
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")], max_attempts=3, timeout_s=300)
    in_flight: list[NodeTask] = []

    def answer(task: NodeTask) -> list[Event]:
        in_flight.append(task)
        return [started(task)]  # a long piece of work: no answer yet

    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}, answer):
        await submit(isolated, producer, run_id, ir)

        def running() -> None:
            assert of_type(log.events(run_id), NodeStarted, "a")

        await eventually(running, timeout=60)
        await append(isolated, producer, cancel_requested(run_id, "no longer needed"))
        await until_finished(log, run_id, RunCancelled)
        # The abandoned attempt answers after all: the run must not move on to b.
        late = await append(isolated, producer, succeeded(in_flight[0], {"late": True}))
        await eventually(lambda: committed_past(isolated, *late), timeout=60)

    events = log.events(run_id)
    skipped = {e.payload.node_id: e.payload.reason for e in of_type(events, NodeSkipped)}
    assert skipped == {
        "a": "run cancelled; attempt 1 was abandoned in flight",
        "b": "run cancelled before the node started",
    }
    (cancelled,) = of_type(events, RunCancelled)
    assert cancelled.payload.reason == "no longer needed"
    assert [e.payload.node_id for e in of_type(events, NodeScheduled)] == ["a"]
    assert not of_type(events, RunCompleted)


async def test_unknown_node_type_is_skipped_with_a_warning_and_the_run_completes(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = new_run()
    # A type no worker runs can reach a run through a patch, or through a definition
    # published by a newer release; the coordinator must never hang on it.
    ir = build_ir(
        {"a": "noop", "x": "teleport", "after_x": "noop", "c": "transform", "end": "noop"},
        [("a", "x"), ("x", "after_x"), ("a", "c"), ("c", "end"), ("after_x", "end")],
    )
    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}):
        await submit(isolated, producer, run_id, ir)
        await until_finished(log, run_id, RunCompleted)

    events = log.events(run_id)
    (warning,) = of_type(events, RunWarning)
    assert warning.payload.node_id == "x"
    assert "'teleport'" in warning.payload.message
    skipped = {e.payload.node_id: e.payload.reason for e in of_type(events, NodeSkipped)}
    assert skipped["x"] == "unknown node type 'teleport'"
    assert skipped["after_x"] == "branch not taken: x is skipped"
    assert sorted(e.payload.node_id for e in of_type(events, NodeScheduled)) == ["a", "c", "end"]
    assert of_type(events, RunCompleted)[0].payload.output == {"end": {"node": "end"}}
