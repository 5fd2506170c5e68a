"""wait_event nodes in the decider: the node waits once its worker has rendered the name and
key; an outside event with that name and key takes its ``received`` edge with the event's
data as its output; any other (another key, a second event, a late one) changes nothing;
its time limit takes the ``timeout`` edge."""

from __future__ import annotations

import pytest

from run_model import NodeStatus, RunStatus
from run_model.testing import (
    EPOCH,
    build_ir,
    cancel_requested,
    event_awaited,
    event_received,
    started,
)
from run_model.timers import Timer, pending_timers, timer_fired
from schemas import InvalidWorkflow, WorkflowDefinition, compile_workflow
from schemas.events import NodeSucceeded, RunCancelled
from schemas.ir import WorkflowIR
from tests.unit.test_decider import Harness, types


def payment_ir() -> WorkflowIR:
    return build_ir(
        {"order": "noop", "pay": "wait_event", "ship": "noop", "chase": "noop"},
        [("order", "pay"), ("pay", "ship", "received"), ("pay", "chase", "timeout")],
    )


def waiting(timeout_s: float | None = 30) -> Harness:
    h = Harness(payment_ir())
    h.succeed("order")
    task = h.open_tasks.pop("pay")
    h.feed(started(task))
    h.feed(event_awaited(task, "payment", "A-1", timeout_s))
    return h


def test_an_awaited_event_makes_the_node_and_the_run_wait_with_its_deadline() -> None:
    h = waiting(timeout_s=30)
    assert h.status("pay") is NodeStatus.WAITING
    assert h.run.status is RunStatus.WAITING
    assert not h.open_tasks
    timers = pending_timers(h.run, grace_s=5)
    assert [(t.kind, t.node_id, t.attempt) for t in timers] == [("event", "pay", 1)]
    assert timers[0].due_at == EPOCH.replace(second=30)


def test_the_matching_event_takes_the_received_edge_with_its_data() -> None:
    h = waiting()
    decided = h.feed(event_received("run-1", "pay", "payment", "A-1", {"paid": 12}))
    assert sorted(types(decided)[:3]) == ["NodeScheduled", "NodeSkipped", "NodeSucceeded"]
    success = decided[0]
    assert isinstance(success, NodeSucceeded)
    assert (success.payload.outcome, success.payload.output) == ("received", {"paid": 12})
    assert h.status("chase") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["ship"]
    assert h.task("ship").nodes["pay"].output == {"paid": 12}
    assert pending_timers(h.run, grace_s=5) == []


def test_another_key_or_name_or_attempt_changes_nothing() -> None:
    h = waiting()
    for ev in (
        event_received("run-1", "pay", "payment", "A-2", {"paid": 1}),
        event_received("run-1", "pay", "refund", "A-1", {"paid": 1}),
        event_received("run-1", "pay", "payment", "A-1", {"paid": 1}, attempt=2),
        event_received("run-1", "ship", "payment", "A-1", {"paid": 1}),  # not waiting
        event_received("run-1", "nowhere", "payment", "A-1", {"paid": 1}),
    ):
        assert h.feed(ev) == []
    assert h.status("pay") is NodeStatus.WAITING


def test_a_second_event_after_the_first_changes_nothing() -> None:
    h = waiting()
    h.feed(event_received("run-1", "pay", "payment", "A-1", {"n": 1}))
    again = event_received("run-1", "pay", "payment", "A-1", {"n": 2})
    again = again.model_copy(update={"event_id": "another-posting"})
    assert h.feed(again) == []
    assert h.run.nodes["pay"].output == {"n": 1}


def test_its_time_limit_takes_the_timeout_edge() -> None:
    h = waiting(timeout_s=30)
    (timer,) = pending_timers(h.run, grace_s=5)
    decided = h.feed(timer_fired("run-1", h.run.tenant, timer, timer.due_at))
    success = decided[0]
    assert isinstance(success, NodeSucceeded)
    assert (success.payload.outcome, success.payload.output) == ("timeout", None)
    assert h.status("ship") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["chase"]
    # The event that comes after its time is up changes nothing.
    assert h.feed(event_received("run-1", "pay", "payment", "A-1", {"late": True})) == []
    # Nor does the timer again (a restart fires it twice).
    assert h.feed(timer_fired("run-1", h.run.tenant, timer, timer.due_at)) == []


def test_a_timer_of_another_attempt_changes_nothing() -> None:
    h = waiting(timeout_s=30)
    stale = Timer("event", "pay", 2, EPOCH)
    assert h.feed(timer_fired("run-1", h.run.tenant, stale, EPOCH)) == []
    assert h.status("pay") is NodeStatus.WAITING


def test_without_a_time_limit_it_waits_for_the_event_alone() -> None:
    h = waiting(timeout_s=None)
    assert pending_timers(h.run, grace_s=5) == []


def test_cancelling_a_waiting_run_ends_it_and_an_event_then_changes_nothing() -> None:
    h = waiting()
    decided = h.feed(cancel_requested("run-1"))
    assert isinstance(decided[-1], RunCancelled)
    assert h.feed(event_received("run-1", "pay", "payment", "A-1")) == []


def _definition(config: dict[str, object], when: str | None) -> WorkflowDefinition:
    edge: dict[str, object] = {"from": "pay", "to": "ship"}
    if when is not None:
        edge["when"] = when
    return WorkflowDefinition.model_validate(
        {
            "nodes": [
                {"id": "pay", "type": "wait_event", "config": config, "timeout_s": 30},
                {"id": "ship", "type": "noop"},
            ],
            "edges": [edge],
        }
    )


def test_a_wait_event_node_is_published_with_its_name_key_and_outcome_edges() -> None:
    ir = compile_workflow(_definition({"name": "payment", "key": "{{ input.order }}"}, "timeout"))
    assert [n.type for n in ir.nodes.values()] == ["wait_event", "noop"]


@pytest.mark.parametrize(
    ("config", "when", "reason"),
    [
        ({"key": "k"}, "received", "needs config.name"),
        ({"name": "payment", "key": ""}, "received", "needs config.key"),
        ({"name": "payment", "key": "k", "extra": 1}, "received", "does not take: extra"),
        ({"name": "payment", "key": "k"}, None, "needs when= one of ['received', 'timeout']"),
        ({"name": "payment", "key": "k"}, "approved", "needs when= one of"),
    ],
)
def test_a_wait_event_node_without_what_it_needs_is_refused_with_the_reason(
    config: dict[str, object], when: str | None, reason: str
) -> None:
    with pytest.raises(InvalidWorkflow) as refused:
        compile_workflow(_definition(config, when))
    assert any(reason in r for r in refused.value.reasons), refused.value.reasons
