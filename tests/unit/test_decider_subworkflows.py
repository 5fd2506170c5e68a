"""subworkflow nodes in the decider: the task carries the run's depth and the pinned version;
the node waits once its child started; the child's end ends the node (its output, or its
reason, never retried); a child tells its parent how it finished, through an event for the
parent's stream; a parent that is cancelled or fails asks the children it waits for to
cancel. Every event for another run has an id derived from its cause and that run."""

from __future__ import annotations

from typing import Any

from run_model import NodeStatus, RunState, RunStatus, step
from run_model.decide import Decision
from run_model.testing import (
    EPOCH,
    build_ir,
    cancel_requested,
    run_submitted,
    started,
    subworkflow_finished,
    subworkflow_started,
    succeeded,
)
from run_model.timers import pending_timers
from schemas import InvalidWorkflow, WorkflowDefinition, compile_workflow
from schemas.envelope import Event
from schemas.events import (
    NodeFailed,
    NodeSucceeded,
    RunCancelRequested,
    RunFailed,
    RunParent,
    SubworkflowFinished,
)
from schemas.subworkflow_node import SubworkflowCall
from schemas.tasks import NodeTask
from schemas.workflow_ids import workflow_id_for

PARENT = RunParent(run_id="run-1", node_id="call", attempt=1)
CHILD = "child-1"


def caller_ir(max_attempts: int = 1) -> Any:
    definition = WorkflowDefinition.model_validate(
        {
            "nodes": [
                {
                    "id": "call",
                    "type": "subworkflow",
                    "config": {"workflow": "enrich", "input": {"x": "{{ input.x }}"}},
                    "retry": {"max_attempts": max_attempts, "backoff_s": 0},
                },
                {"id": "after", "type": "noop"},
            ],
            "edges": [{"from": "call", "to": "after"}],
        }
    )
    return compile_workflow(definition)


class Run:
    """One run fed through ``step``, keeping the tasks and events for other runs."""

    def __init__(self, ir: Any, run_id: str = "run-1", **submitted: Any) -> None:
        self.state: RunState | None = None
        self.tasks: dict[str, NodeTask] = {}
        self.elsewhere: list[Event] = []
        self.feed(run_submitted(run_id, ir, {"x": 1}, **submitted))

    def feed(self, event: Event) -> Decision:
        self.state, decision = step(self.state, event, EPOCH)
        self.tasks.update({t.node_id: t for t in decision.tasks})
        self.elsewhere += decision.elsewhere
        return decision

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state


def waiting(max_attempts: int = 1) -> Run:
    r = Run(caller_ir(max_attempts), depth=2, subworkflows={"wf-x": "v-x"})
    task = r.tasks["call"]
    r.feed(started(task))
    r.feed(subworkflow_started(task, CHILD))
    return r


def test_the_task_carries_the_runs_depth_and_the_version_pinned_at_submission() -> None:
    pinned = {workflow_id_for("acme", "enrich"): "v-pinned"}
    r = Run(caller_ir(), depth=3, subworkflows=pinned)
    assert r.tasks["call"].subworkflow == SubworkflowCall(depth=3, pinned="v-pinned")
    unpinned = Run(caller_ir())
    assert unpinned.tasks["call"].subworkflow == SubworkflowCall(depth=0, pinned=None)


def test_a_started_child_makes_the_node_and_the_run_wait_without_a_deadline() -> None:
    r = waiting()
    node = r.run.nodes["call"]
    assert node.status is NodeStatus.WAITING
    assert node.child is not None
    assert (node.child.attempt, node.child.run_id) == (1, CHILD)
    assert r.run.status is RunStatus.WAITING
    assert pending_timers(r.run, grace_s=5) == []


def test_the_childs_output_is_the_nodes_and_the_run_goes_on() -> None:
    r = waiting()
    decision = r.feed(subworkflow_finished(PARENT, CHILD, "COMPLETED", {"sink": {"n": 1}}))
    success = decision.events[0]
    assert isinstance(success, NodeSucceeded)
    assert success.payload.output == {"sink": {"n": 1}}
    assert r.tasks["after"].nodes["call"].output == {"sink": {"n": 1}}
    assert r.elsewhere == []  # a root run tells no parent


def test_another_child_or_attempt_changes_nothing() -> None:
    r = waiting()
    for ev in (
        subworkflow_finished(PARENT, "someone-else", "COMPLETED", {}),
        subworkflow_finished(PARENT.model_copy(update={"attempt": 2}), CHILD, "COMPLETED", {}),
        subworkflow_finished(PARENT.model_copy(update={"node_id": "after"}), CHILD, "FAILED"),
    ):
        assert not r.feed(ev)
    assert r.run.nodes["call"].status is NodeStatus.WAITING


def test_a_failed_child_fails_the_node_for_good_whatever_its_retries() -> None:
    r = waiting(max_attempts=3)
    decision = r.feed(subworkflow_finished(PARENT, CHILD, "FAILED", error="node 'x' broke"))
    failure, run_failed = decision.events[0], decision.events[-1]
    assert isinstance(failure, NodeFailed) and not failure.payload.retryable
    assert failure.payload.error == f"child run {CHILD} failed: node 'x' broke"
    assert isinstance(run_failed, RunFailed)
    assert r.run.status is RunStatus.FAILED and not decision.tasks
    # The failing child is finished: no cancel goes to it.
    assert r.elsewhere == []


def test_a_child_tells_its_parent_its_output_or_its_reason() -> None:
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    child = Run(ir, run_id=CHILD, parent=PARENT, depth=1)
    child.feed(started(child.tasks["a"]))
    child.feed(succeeded(child.tasks["a"], {"v": 1}))
    before, last = child.state, succeeded(child.tasks["b"], {"v": 2})
    decision = child.feed(last)
    assert child.run.status is RunStatus.COMPLETED
    (told,) = decision.elsewhere
    assert isinstance(told, SubworkflowFinished)
    assert told.aggregate_id == PARENT.run_id
    assert (told.payload.node_id, told.payload.attempt) == ("call", 1)
    assert (told.payload.status, told.payload.output) == ("COMPLETED", {"b": {"v": 2}})
    # Decided again from the same state (a batch handled again after a crash): the same
    # event, which consumers drop.
    _, again = step(before, last, EPOCH)
    assert [e.event_id for e in again.elsewhere] == [told.event_id]

    cancelled = Run(ir, run_id=CHILD, parent=PARENT, depth=1)
    (told,) = cancelled.feed(cancel_requested(CHILD, "stop")).elsewhere
    assert isinstance(told, SubworkflowFinished)
    assert (told.payload.status, told.payload.error) == ("CANCELLED", "stop")


def test_cancelling_a_parent_cancels_the_child_it_waits_for() -> None:
    r = waiting()
    decision = r.feed(cancel_requested("run-1", "not needed"))
    assert r.run.status is RunStatus.CANCELLED
    (cancel,) = decision.elsewhere
    assert isinstance(cancel, RunCancelRequested)
    assert cancel.aggregate_id == CHILD
    assert cancel.payload.reason == "its parent run run-1 was cancelled"
    skipped = [e for e in decision.events if e.type == "run.node_skipped"]
    assert (
        skipped[0].payload.reason
        == f"run cancelled while the node waited for its child run {CHILD}"
    )
    # The same cancel again: the same id (the state already has it: nothing more).
    r2 = waiting()
    assert r2.feed(cancel_requested("run-1", "not needed")).elsewhere[0].event_id == cancel.event_id


def test_a_subworkflow_config_is_checked_at_publish_and_map_refuses_it() -> None:
    def reasons(config: dict[str, Any], kind: str = "subworkflow") -> str:
        definition = WorkflowDefinition.model_validate(
            {"nodes": [{"id": "n", "type": kind, "config": config}], "edges": []}
        )
        try:
            compile_workflow(definition)
        except InvalidWorkflow as e:
            return str(e)
        return ""

    assert reasons({"workflow": "w"}) == ""
    assert reasons({"workflow": "w", "version": "latest", "input": {"a": "{{ input }}"}}) == ""
    assert "config.workflow" in reasons({})
    assert "config.retries" in reasons({"workflow": "w", "retries": 2})
    inner = {"over": "input.xs", "node": {"type": "subworkflow", "config": {"workflow": "w"}}}
    assert "subworkflow" in reasons(inner, kind="map")
