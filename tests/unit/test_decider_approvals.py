"""hitl nodes in the decider: waiting, decisions accepted or refused, the default on timeout."""

from __future__ import annotations

from datetime import timedelta

from run_model import NodeStatus, RunStatus
from run_model.testing import (
    EPOCH,
    approval_requested,
    approval_submitted,
    build_ir,
    cancel_requested,
    started,
)
from run_model.timers import pending_timers, timer_fired
from schemas.events import (
    ApprovalDecided,
    ApprovalRefused,
    NodeSkipped,
    RunCancelled,
    RunCompleted,
)
from tests.unit.test_decider import Harness, types


def review_ir() -> object:
    return build_ir(
        {"draft": "noop", "review": "hitl", "publish": "noop", "drop": "noop"},
        [
            ("draft", "review"),
            ("review", "publish", "approved"),
            ("review", "drop", "rejected"),
        ],
    )


def waiting(timeout_s: float | None = None, default: str | None = None) -> Harness:
    """A run whose ``review`` node has asked for a decision."""
    h = Harness(review_ir())
    h.succeed("draft")
    task = h.open_tasks.pop("review")
    h.feed(started(task))
    h.feed(approval_requested(task, timeout_s, default))
    return h


def test_a_requested_approval_makes_the_node_and_the_run_wait() -> None:
    h = waiting()
    assert h.status("review") is NodeStatus.WAITING
    assert h.run.status is RunStatus.WAITING
    assert not h.open_tasks
    # No deadline while a person decides, unless the node set one.
    assert pending_timers(h.run, grace_s=5) == []


def test_approve_goes_down_the_approved_edge() -> None:
    h = waiting()
    decided = h.feed(approval_submitted("run-1", "review", "approved"))
    assert types(decided)[:2] == ["ApprovalDecided", "NodeScheduled"]
    d = decided[0]
    assert isinstance(d, ApprovalDecided)
    assert (d.payload.decision, d.payload.decided_by, d.payload.timed_out) == (
        "approved",
        "alice",
        False,
    )
    assert h.status("review") is NodeStatus.SUCCEEDED
    assert h.status("drop") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["publish"]
    assert h.task("publish").nodes["review"].output["decision"] == "approved"
    assert h.run.status is RunStatus.RUNNING
    done = h.succeed("publish")
    assert isinstance(done[-1], RunCompleted)


def test_reject_goes_down_the_rejected_edge() -> None:
    h = waiting()
    h.feed(approval_submitted("run-1", "review", "rejected", by="bob"))
    assert h.status("publish") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["drop"]
    assert h.run.nodes["review"].output["decided_by"] == "bob"


def test_a_second_decision_is_refused_with_who_decided() -> None:
    h = waiting()
    h.feed(approval_submitted("run-1", "review", "approved", by="alice", tag="1"))
    refused = h.feed(approval_submitted("run-1", "review", "rejected", by="bob", tag="2"))
    assert types(refused) == ["ApprovalRefused"]
    r = refused[0]
    assert isinstance(r, ApprovalRefused)
    assert r.payload.reason == "node 'review' was decided already: approved by alice"
    assert h.run.nodes["review"].output["decision"] == "approved"
    assert list(h.open_tasks) == ["publish"]


def test_the_same_submission_delivered_twice_is_one_decision() -> None:
    h = waiting()
    submission = approval_submitted("run-1", "review", "approved")
    h.feed(submission)
    assert h.feed(submission) == []


def test_a_decision_before_the_request_is_refused_and_the_later_one_counts() -> None:
    h = Harness(review_ir())
    early = h.feed(approval_submitted("run-1", "review", "approved", tag="early"))
    assert types(early) == ["ApprovalRefused"]
    assert "is not waiting for a decision (it is PENDING)" in early[0].payload.reason
    h.succeed("draft")
    task = h.open_tasks.pop("review")
    h.feed(approval_requested(task))
    later = h.feed(approval_submitted("run-1", "review", "rejected", tag="later"))
    assert types(later)[0] == "ApprovalDecided"


def test_a_decision_on_a_node_that_is_no_approval_is_refused() -> None:
    h = waiting()
    r = h.feed(approval_submitted("run-1", "draft", "approved"))
    assert r[0].payload.reason == "node 'draft' is a 'noop' node; only hitl nodes take decisions"
    r = h.feed(approval_submitted("run-1", "nope", "approved", tag="2"))
    assert r[0].payload.reason == "the run has no node 'nope'"
    assert h.status("review") is NodeStatus.WAITING


def test_the_time_limit_takes_the_default_outcome() -> None:
    h = waiting(timeout_s=30, default="approved")
    [timer] = pending_timers(h.run, grace_s=5)
    assert (timer.kind, timer.node_id, timer.due_at) == (
        "approval",
        "review",
        EPOCH + timedelta(seconds=30),
    )
    decided = h.feed(timer_fired("run-1", "acme", timer, EPOCH + timedelta(seconds=31)))
    d = decided[0]
    assert isinstance(d, ApprovalDecided)
    assert (d.payload.decision, d.payload.decided_by, d.payload.timed_out) == (
        "approved",
        "timeout",
        True,
    )
    assert list(h.open_tasks) == ["publish"]
    assert pending_timers(h.run, grace_s=5) == []
    late = h.feed(approval_submitted("run-1", "review", "rejected"))
    assert late[0].payload.reason == "node 'review' was decided already: approved by its time limit"


def test_a_timer_after_the_decision_changes_nothing() -> None:
    h = waiting(timeout_s=30, default="rejected")
    [timer] = pending_timers(h.run, grace_s=5)
    h.feed(approval_submitted("run-1", "review", "approved"))
    assert h.feed(timer_fired("run-1", "acme", timer, EPOCH + timedelta(seconds=31))) == []
    assert h.run.nodes["review"].output["decision"] == "approved"


def test_cancel_while_waiting_skips_the_node_with_a_reason() -> None:
    h = waiting()
    out = h.feed(cancel_requested("run-1"))
    skipped = {e.payload.node_id: e.payload.reason for e in out if isinstance(e, NodeSkipped)}
    assert skipped["review"] == "run cancelled while the node waited for a decision"
    assert isinstance(out[-1], RunCancelled)


def test_a_redelivered_hitl_task_does_not_undo_the_wait() -> None:
    h = waiting()
    task = h.all_tasks[-1]
    h.feed(started(task).model_copy(update={"event_id": "another-start"}))
    assert h.status("review") is NodeStatus.WAITING


def test_a_decision_on_a_finished_run_is_refused_with_its_status() -> None:
    from run_model.decide import refuse_after_finish
    from run_model.state import RunStatus as Status

    submission = approval_submitted("run-1", "review", "approved")
    refused = refuse_after_finish(submission, Status.COMPLETED, EPOCH)
    assert refused.payload.reason == "the run is COMPLETED: it takes no more decisions"
    assert refused.payload.submission_id == submission.event_id
    assert refuse_after_finish(submission, Status.COMPLETED, EPOCH).event_id == refused.event_id
