"""Time in the decider: retry backoff with jitter, attempt deadlines, cancel during a wait.

The decider never reads a clock to decide whether a moment has come: a timer that is due
arrives as a TimerFired event, and the decider checks the run's facts. These tests play the
ticker by hand with ``pending_timers`` and ``timer_fired``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from run_model import NodeStatus, RunStatus
from run_model.backoff import retry_delay_s
from run_model.testing import EPOCH, build_ir, cancel_requested, failed, started, succeeded
from run_model.timers import Timer, pending_timers, timer_fired
from schemas.events import NodeFailed, NodeRetryPlanned, RunFailed, TimerFired
from schemas.workflow import RetryPolicy
from tests.unit.test_decider import Harness, types


def fire(h: Harness, kind: str, node_id: str) -> list:
    """Fire the pending timer of ``kind`` for ``node_id``, as the ticker would."""
    timer = next(t for t in pending_timers(h.run, grace_s=5) if t.kind == kind)
    assert timer.node_id == node_id
    return h.feed(timer_fired(h.run.run_id, h.run.tenant, timer, EPOCH))


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_backoff_doubles_with_jitter_inside_half_to_full(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=2.0, max_backoff_s=40)
    ceiling = min(2.0 * 2 ** (attempt - 1), 40)
    delays = {retry_delay_s(policy, attempt, f"run-{i}", "n") for i in range(50)}
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 40, "the jitter spreads runs that failed together"
    # ... and is a pure function: the same run, node and attempt always wait the same.
    assert retry_delay_s(policy, attempt, "run-1", "n") == retry_delay_s(
        policy, attempt, "run-1", "n"
    )


def test_no_backoff_retries_at_once() -> None:
    assert retry_delay_s(RetryPolicy(max_attempts=3, backoff_s=0), 1, "r", "n") == 0


def test_default_cap_is_five_minutes() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_s=100)
    assert retry_delay_s(policy, 10, "r", "n") <= 300


def test_retryable_failure_plans_a_retry_that_its_timer_schedules_once() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=3, backoff_s=1.0))
    decided = h.fail("a")
    assert types(decided) == ["NodeRetryPlanned"]
    plan = decided[0]
    assert isinstance(plan, NodeRetryPlanned)
    assert plan.payload.attempt == 2
    assert 0.5 <= plan.payload.delay_s <= 1.0
    # Counted from the failure (EPOCH in these events), not from the decider's clock.
    assert plan.payload.due_at == EPOCH + timedelta(seconds=plan.payload.delay_s)
    assert h.scheduled() == [("a", 1)]  # nothing scheduled before the moment comes
    timers = pending_timers(h.run, grace_s=5)
    assert [(t.kind, t.node_id, t.attempt, t.due_at) for t in timers] == [
        ("retry", "a", 2, plan.payload.due_at)
    ]
    fired = timer_fired(h.run.run_id, h.run.tenant, timers[0], EPOCH)
    assert types(h.feed(fired)) == ["NodeScheduled"]
    assert h.scheduled() == [("a", 1), ("a", 2)]
    # The same timer again (a restarted ticker), under its own id or another: nothing.
    assert h.feed(fired) == []
    assert h.feed(fired.model_copy(update={"event_id": "fired-again"})) == []
    assert pending_timers(h.run, grace_s=5) == []  # attempt 2 is not started yet
    h.succeed("a")
    assert h.run.status is RunStatus.COMPLETED


def test_a_failure_reported_twice_plans_one_retry() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=3, backoff_s=1.0))
    report = failed(h.task("a"))
    assert types(h.feed(report)) == ["NodeRetryPlanned"]
    assert h.feed(report.model_copy(update={"event_id": "redelivered"})) == []


def test_attempt_deadline_counts_from_its_first_start() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=2, timeout_s=10))
    task = h.task("a")
    assert pending_timers(h.run, grace_s=5) == []  # waiting in the queue has no deadline
    begun = started(task).model_copy(update={"occurred_at": EPOCH + timedelta(seconds=3)})
    h.feed(begun)
    # A redelivered task starting again later does not push the deadline back.
    later = begun.model_copy(
        update={"event_id": "again", "occurred_at": EPOCH + timedelta(seconds=9)}
    )
    h.feed(later)
    assert pending_timers(h.run, grace_s=5) == [
        Timer("timeout", "a", 1, EPOCH + timedelta(seconds=18), 15.0)
    ]


def test_default_time_limit_applies_without_timeout_s() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    h.feed(started(h.task("a")))
    (timer,) = pending_timers(h.run, grace_s=5)
    assert timer.timeout_s == 65.0


def test_unanswered_attempt_times_out_and_is_retried_and_its_late_answer_still_counts() -> None:
    h = Harness(build_ir({"a": "http", "b": "noop"}, [("a", "b")], max_attempts=3, timeout_s=10))
    first = h.task("a")
    h.feed(started(first))
    decided = fire(h, "timeout", "a")
    assert types(decided) == ["NodeFailed", "NodeScheduled"]  # no backoff: at once
    failure = decided[0]
    assert isinstance(failure, NodeFailed)
    assert failure.actor.id == "coordinator"
    assert failure.payload.retryable
    assert failure.payload.error == "timed out: attempt 1 gave no answer within 15s"
    # The worker's own failure report of attempt 1, arriving late, changes nothing.
    assert h.feed(failed(first, "timed out after 10s")) == []
    # Attempt 1's answer comes after all: the first success wins, b runs once.
    assert types(h.feed(succeeded(first, {"late": True}))) == ["NodeScheduled"]
    assert h.run.nodes["a"].succeeded_attempt == 1
    second = h.open_tasks.pop("a")
    assert h.feed(succeeded(second, {"late": False})) == []
    h.succeed("b")
    assert h.run.status is RunStatus.COMPLETED
    assert [n for n, _ in h.scheduled()] == ["a", "a", "b"]


def test_timer_of_an_attempt_that_answered_meanwhile_does_nothing() -> None:
    h = Harness(build_ir({"a": "http", "b": "noop"}, [("a", "b")], max_attempts=3, timeout_s=10))
    task = h.task("a")
    h.feed(started(task))
    (timer,) = pending_timers(h.run, grace_s=5)
    h.feed(succeeded(task))  # the answer is ahead of the timer in the log
    assert h.feed(timer_fired(h.run.run_id, h.run.tenant, timer, EPOCH)) == []
    assert h.scheduled() == [("a", 1), ("b", 1)]


def test_last_attempt_timing_out_fails_the_run_with_the_reason() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=1, timeout_s=2))
    h.feed(started(h.task("a")))
    decided = fire(h, "timeout", "a")
    assert types(decided) == ["NodeFailed", "RunFailed"]
    assert isinstance(decided[1], RunFailed)
    assert decided[1].payload.reason == (
        "node 'a' failed in attempt 1: timed out: attempt 1 gave no answer within 7s"
    )
    assert h.run.nodes["a"].status is NodeStatus.FAILED
    assert pending_timers(h.run, grace_s=5) == []


def test_cancel_during_backoff_schedules_nothing_more() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=3, backoff_s=5))
    h.fail("a")
    (timer,) = pending_timers(h.run, grace_s=5)
    decided = h.feed(cancel_requested("run-1"))
    assert types(decided) == ["NodeSkipped", "RunCancelled"]
    assert h.feed(timer_fired(h.run.run_id, h.run.tenant, timer, EPOCH)) == []
    assert h.scheduled() == [("a", 1)]
    assert h.run.status is RunStatus.CANCELLED
    assert pending_timers(h.run, grace_s=5) == []


def test_timer_ids_depend_on_the_timer_only() -> None:
    timer = Timer("retry", "a", 2, EPOCH)
    one = timer_fired("run-1", "acme", timer, EPOCH)
    two = timer_fired("run-1", "acme", timer, EPOCH + timedelta(hours=1))
    assert isinstance(one, TimerFired)
    assert one.event_id == two.event_id
    assert one.event_id != timer_fired("run-2", "acme", timer, EPOCH).event_id
