"""When a worker tells that an attempt started (``workers.start_report``): every outcome
carries its start, and a quick attempt sends no ``run.node_started``; a slow one, or one
that reports anything else first, sends its start first, stamped with when it really
started; and the coordinator's state and the read model take the start from either."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from run_model.testing import EPOCH, build_ir, failed, succeeded
from run_model.timers import pending_timers
from schemas.events import (
    ModelCalled,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    NodeSucceededPayload,
)
from tests.unit.test_decider import Harness
from tests.unit.test_decider_map import MapHarness, map_ir
from tests.unit.test_projections import Log, fold, sched
from tests.unit.test_worker_outcomes import calling_a_model, task
from tests.unit.test_worker_outcomes import executor as outcomes_executor
from tests.worker_support import RunLog
from workers.errors import NodeError
from workers.execute import TaskExecutor
from workers.handlers.base import WAITING, Job
from workers.start_report import with_start


def executor(handler: Any, log: RunLog, after_s: float) -> TaskExecutor:
    return outcomes_executor(handler, log, report_start_after_s=after_s)


def sleeping(seconds: float, value: Any = None) -> Any:
    async def handler(job: Job) -> Any:
        await asyncio.sleep(seconds)
        return {"slept": seconds} if value is None else value

    return handler


async def test_a_quick_attempt_tells_its_start_with_its_outcome() -> None:
    log = RunLog()
    await executor(sleeping(0), log, after_s=0.5).run(task())
    [outcome] = log.events
    assert isinstance(outcome, NodeSucceeded)
    started_at = outcome.payload.started_at
    assert started_at is not None and started_at <= outcome.occurred_at


async def test_a_quick_failure_tells_its_start_too() -> None:
    async def failing(job: Job) -> Any:
        raise NodeError("the target said no")

    log = RunLog()
    await executor(failing, log, after_s=0.5).run(task())
    [outcome] = log.events
    assert isinstance(outcome, NodeFailed) and outcome.payload.started_at is not None


async def test_a_slow_attempt_sends_its_start_on_its_own_with_its_real_start_time() -> None:
    log = RunLog()
    await executor(sleeping(0.2), log, after_s=0.02).run(task())
    start, outcome = log.events
    assert isinstance(start, NodeStarted) and isinstance(outcome, NodeSucceeded)
    # The outcome tells the same start: a start on its own may reach the log after it.
    assert outcome.payload.started_at == start.occurred_at
    # Stamped when the attempt began, not when the report went out 20 ms later.
    assert outcome.occurred_at - start.occurred_at >= timedelta(seconds=0.15)


async def test_an_attempt_that_reports_something_else_first_sends_its_start_before_it() -> None:
    log = RunLog()
    await executor(calling_a_model, log, after_s=60).run(task())
    assert [type(e) for e in log.events] == [NodeStarted, ModelCalled, NodeSucceeded]
    assert log.events[2].payload.started_at == log.events[0].occurred_at


async def test_an_attempt_that_waits_elsewhere_without_a_word_still_sends_its_start() -> None:
    async def waiting(job: Job) -> Any:
        return WAITING

    log = RunLog()
    await executor(waiting, log, after_s=60).run(task())
    assert [type(e) for e in log.events] == [NodeStarted]


async def test_with_no_delay_every_start_is_sent_as_the_attempt_starts() -> None:
    log = RunLog()
    await executor(sleeping(0), log, after_s=0).run(task())
    assert [type(e) for e in log.events] == [NodeStarted, NodeSucceeded]
    assert log.events[1].payload.started_at == log.events[0].occurred_at


def test_the_coordinators_state_takes_the_start_an_outcome_told() -> None:
    """A retryable failure that told its start: the state says when the attempt ran, as
    after a NodeStarted, and the retry is planned as usual."""
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")], max_attempts=2, backoff_s=5))
    task = h.task("a")
    at = EPOCH - timedelta(seconds=3)
    h.feed(with_start(failed(task, "a broke", retryable=True), at))
    a = h.run.nodes["a"]
    assert (a.started, a.started_at) == ([1], {1: at})
    assert [t.kind for t in pending_timers(h.run, 5)] == ["retry"]


def test_a_map_items_start_told_with_its_success_is_in_the_state() -> None:
    h = MapHarness(map_ir())
    h.succeed("fetch", output={"items": [{"name": "x"}]})
    task = h.open.pop(("each", 0))
    at = EPOCH - timedelta(seconds=2)
    h.feed(with_start(succeeded(task, "x"), at))
    assert h.run.nodes["each"].items[0].started_at == {1: at}


def test_the_read_model_shows_the_start_an_outcome_told() -> None:
    log = Log()
    payload = NodeSucceededPayload(
        node_id="a", attempt=1, output={}, output_inline=True, output_size=2
    )
    ok = log(NodeSucceeded, payload)
    started_at = ok.occurred_at - timedelta(milliseconds=7)
    f = fold([log.submitted(), sched(log, "a"), with_start(ok, started_at)])
    a = f.nodes[("r1", "a")]
    assert (a.status, a.started_at, a.finished_at) == ("SUCCEEDED", started_at, ok.occurred_at)
