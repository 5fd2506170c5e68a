"""The coordinator's decider, event by event: scheduling, skipping, retries, cancel."""

from __future__ import annotations

from typing import Any

from run_model import NodeStatus, RunState, RunStatus, evolve, step
from run_model.testing import (
    EPOCH,
    approval_requested,
    approval_submitted,
    build_ir,
    cancel_requested,
    event_awaited,
    event_received,
    failed,
    model_called,
    run_submitted,
    started,
    succeeded,
    tool_called,
)
from schemas.envelope import Event
from schemas.events import (
    NodeScheduled,
    NodeSkipped,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    RunWarning,
)
from schemas.tasks import NodeTask


class Harness:
    """Feeds events through ``step`` as the adapter does, remembering what was decided."""

    def __init__(self, ir: Any, run_input: Any = None, run_id: str = "run-1") -> None:
        self.state: RunState | None = None
        self.log: list[Event] = []
        self.open_tasks: dict[str, NodeTask] = {}
        self.all_tasks: list[NodeTask] = []
        self.feed(run_submitted(run_id, ir, run_input))

    def feed(self, event: Event) -> list[Event]:
        self.state, decision = step(self.state, event, EPOCH)
        self.log.append(event)
        self.log.extend(decision.events)
        for task in decision.tasks:
            self.open_tasks[task.node_id] = task
            self.all_tasks.append(task)
        return decision.events

    def task(self, node_id: str) -> NodeTask:
        return self.open_tasks[node_id]

    def succeed(self, node_id: str, output: Any = None) -> list[Event]:
        task = self.open_tasks.pop(node_id)
        self.feed(started(task))
        return self.feed(succeeded(task, output))

    def fail(self, node_id: str, retryable: bool = True) -> list[Event]:
        task = self.open_tasks.pop(node_id)
        return self.feed(failed(task, f"attempt {task.attempt} broke", retryable))

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state

    def status(self, node_id: str) -> NodeStatus:
        return self.run.nodes[node_id].status

    def scheduled(self) -> list[tuple[str, int]]:
        return [
            (e.payload.node_id, e.payload.attempt) for e in self.log if isinstance(e, NodeScheduled)
        ]


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_linear_chain_runs_in_order_and_completes() -> None:
    h = Harness(build_ir({"a": "noop", "b": "transform", "c": "noop"}, [("a", "b"), ("b", "c")]))
    assert types(h.log) == ["RunSubmitted", "RunStarted", "NodeScheduled"]
    assert list(h.open_tasks) == ["a"]
    h.succeed("a", {"x": 1})
    assert list(h.open_tasks) == ["b"]
    assert h.task("b").nodes["a"].output == {"x": 1}
    h.succeed("b", {"y": 2})
    done = h.succeed("c", "end")
    assert types(done) == ["RunCompleted"]
    assert done[0].payload.output == {"c": "end"}
    assert h.run.status is RunStatus.COMPLETED
    assert h.scheduled() == [("a", 1), ("b", 1), ("c", 1)]


def test_task_carries_context_input_and_id_of_its_schedule() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]), run_input={"q": 1})
    h.succeed("a", 5)
    task = h.task("b")
    scheduled = [e for e in h.log if isinstance(e, NodeScheduled) and e.payload.node_id == "b"]
    assert task.task_id == scheduled[0].event_id
    assert task.input == {"q": 1}
    assert task.tenant == "acme"
    assert task.nodes["a"].status == "SUCCEEDED"
    assert scheduled[0].payload.task_topic == "aob.tasks.noop"


def test_fan_out_fan_in_join_waits_for_every_branch() -> None:
    ir = build_ir(
        {"s": "noop", "l": "transform", "r": "transform", "j": "noop"},
        [("s", "l"), ("s", "r"), ("l", "j"), ("r", "j")],
    )
    h = Harness(ir)
    h.succeed("s")
    assert sorted(h.open_tasks) == ["l", "r"]
    assert h.succeed("l", 1) == []  # the join still waits for r
    h.succeed("r", 2)
    assert list(h.open_tasks) == ["j"]
    assert set(h.task("j").nodes) == {"s", "l", "r"}
    assert types(h.succeed("j")) == ["RunCompleted"]
    assert [n for n, _ in h.scheduled()].count("j") == 1


def condition_ir() -> Any:
    return build_ir(
        {"c": "condition", "yes": "noop", "no": "noop", "after_no": "noop", "end": "noop"},
        [
            ("c", "yes", "true"),
            ("c", "no", "false"),
            ("no", "after_no"),
            ("yes", "end"),
            ("after_no", "end"),
        ],
    )


def test_condition_takes_one_branch_and_skipping_flows_on() -> None:
    h = Harness(condition_ir())
    decided = h.succeed("c", {"result": True})
    assert types(decided) == ["NodeScheduled", "NodeSkipped", "NodeSkipped"]
    assert h.status("no") is NodeStatus.SKIPPED
    assert h.status("after_no") is NodeStatus.SKIPPED
    assert "branch not taken" in (h.run.nodes["no"].skip_reason or "")
    # end joins a live branch (yes) and a skipped one (after_no): it runs once yes is done.
    assert list(h.open_tasks) == ["yes"]
    h.succeed("yes")
    assert list(h.open_tasks) == ["end"]
    assert h.task("end").nodes["after_no"].status == "SKIPPED"
    assert types(h.succeed("end")) == ["RunCompleted"]


def test_condition_false_branch() -> None:
    h = Harness(condition_ir())
    h.succeed("c", {"result": False})
    assert h.status("yes") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["no"]


def test_join_of_only_skipped_predecessors_is_skipped_and_run_completes() -> None:
    ir = build_ir(
        {"c": "condition", "a": "noop", "b": "noop", "j": "noop", "k": "noop"},
        [("c", "a", "true"), ("c", "b", "true"), ("a", "j"), ("b", "j"), ("c", "k", "false")],
    )
    h = Harness(ir)
    decided = h.succeed("c", {"result": False})
    assert {e.payload.node_id for e in decided if isinstance(e, NodeSkipped)} == {"a", "b", "j"}
    done = h.succeed("k", "out")
    assert types(done) == ["RunCompleted"]
    assert done[0].payload.output == {"k": "out"}  # skipped sink j gives no output


def test_condition_guard_needs_a_real_bool() -> None:
    h = Harness(condition_ir())
    h.succeed("c", {"result": "false"})  # a string is not a bool: neither branch is live
    assert h.status("yes") is NodeStatus.SKIPPED
    assert h.status("no") is NodeStatus.SKIPPED
    assert h.run.status is RunStatus.COMPLETED


def test_hitl_decision_guards() -> None:
    ir = build_ir(
        {"review": "hitl", "publish": "noop", "drop": "noop"},
        [("review", "publish", "approved"), ("review", "drop", "rejected")],
    )
    h = Harness(ir)
    h.succeed("review", {"decision": "rejected"})
    assert h.status("publish") is NodeStatus.SKIPPED
    assert list(h.open_tasks) == ["drop"]


def test_unknown_type_is_skipped_with_a_warning_never_hung() -> None:
    h = Harness(build_ir({"a": "noop", "x": "teleport", "b": "noop"}, [("a", "x"), ("x", "b")]))
    decided = h.succeed("a")
    assert types(decided) == ["RunWarning", "NodeSkipped", "NodeSkipped", "RunCompleted"]
    warning = decided[0]
    assert isinstance(warning, RunWarning)
    assert warning.payload.node_id == "x"
    assert "teleport" in warning.payload.message
    assert h.run.status is RunStatus.COMPLETED


def test_unknown_type_at_root() -> None:
    h = Harness(build_ir({"x": "teleport"}, []))
    assert types(h.log) == [
        "RunSubmitted",
        "RunStarted",
        "RunWarning",
        "NodeSkipped",
        "RunCompleted",
    ]


def test_retry_then_succeed() -> None:
    h = Harness(build_ir({"a": "http", "b": "noop"}, [("a", "b")], max_attempts=3))
    decided = h.fail("a")
    assert [(e.payload.node_id, e.payload.attempt) for e in decided] == [("a", 2)]
    assert h.task("a").attempt == 2
    h.succeed("a", "ok")
    assert h.run.nodes["a"].failures == {1: "attempt 1 broke"}
    assert h.run.nodes["a"].succeeded_attempt == 2
    assert list(h.open_tasks) == ["b"]


def test_retry_then_fail_for_good() -> None:
    h = Harness(build_ir({"a": "http", "b": "noop"}, [("a", "b")], max_attempts=2))
    h.fail("a")
    decided = h.fail("a")
    assert types(decided) == ["RunFailed"]
    assert isinstance(decided[0], RunFailed)
    assert decided[0].payload.node_id == "a"
    assert "attempt 2" in decided[0].payload.reason
    assert h.run.status is RunStatus.FAILED
    assert h.status("a") is NodeStatus.FAILED
    assert h.status("b") is NodeStatus.PENDING  # nothing new scheduled
    assert h.scheduled() == [("a", 1), ("a", 2)]


def test_not_retryable_fails_at_once() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=5))
    assert types(h.fail("a", retryable=False)) == ["RunFailed"]


def test_failure_in_one_branch_stops_the_run_and_late_successes_change_nothing() -> None:
    ir = build_ir(
        {"s": "noop", "l": "noop", "r": "noop", "j": "noop"},
        [("s", "l"), ("s", "r"), ("l", "j"), ("r", "j")],
    )
    h = Harness(ir)
    h.succeed("s")
    h.fail("l", retryable=False)
    before = h.run
    assert h.succeed("r") == []
    assert h.run is before
    assert "j" not in h.open_tasks


def test_stale_failure_of_a_superseded_attempt_is_ignored() -> None:
    h = Harness(build_ir({"a": "http"}, [], max_attempts=3))
    first = h.task("a")
    h.fail("a")  # attempt 2 scheduled
    # attempt 1 reported again, by a redelivered task, under another event id
    late = failed(first, "late echo").model_copy(update={"event_id": "other-id"})
    assert h.feed(late) == []
    assert h.scheduled() == [("a", 1), ("a", 2)]


def test_cancel_stops_everything_after() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    decided = h.feed(cancel_requested("run-1"))
    # Every unfinished node is skipped, saying why, then the run is cancelled.
    assert types(decided) == ["NodeSkipped", "NodeSkipped", "RunCancelled"]
    skipped = {e.payload.node_id: e.payload.reason for e in decided[:2]}
    assert skipped == {
        "a": "run cancelled; attempt 1 was abandoned in flight",
        "b": "run cancelled before the node started",
    }
    assert isinstance(decided[2], RunCancelled)
    assert decided[2].payload.reason == "user asked"
    assert h.succeed("a") == []  # the abandoned attempt answers late: nothing happens
    assert h.run.status is RunStatus.CANCELLED
    assert h.scheduled() == [("a", 1)]


def test_events_after_completion_change_nothing() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    h.succeed("a")
    assert h.run.status is RunStatus.COMPLETED
    assert h.feed(cancel_requested("run-1")) == []
    assert h.run.status is RunStatus.COMPLETED


def test_duplicate_delivery_is_a_no_op() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    task = h.task("a")
    ok = succeeded(task)
    h.feed(ok)
    state = h.run
    assert h.feed(ok) == []
    assert h.run is state
    assert h.feed(run_submitted("run-1", state.ir)) == []  # the submission again


def test_echo_of_own_decisions_is_recognised() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    state = h.run
    for ev in list(h.log[1:]):  # RunStarted and NodeScheduled coming back through the log
        assert h.feed(ev) == []
    assert h.run is state


def test_two_events_making_one_node_ready_schedule_it_once() -> None:
    # The same success reported twice under different ids (e.g. two workers raced on one
    # task): the successor is scheduled once.
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    task = h.task("a")
    one = succeeded(task, 1)
    two = one.model_copy(update={"event_id": "another-id"})
    assert types(h.feed(one)) == ["NodeScheduled"]
    assert h.feed(two) == []
    assert [n for n, _ in h.scheduled()] == ["a", "b"]


def test_decisions_are_deterministic() -> None:
    ir = build_ir({"a": "noop", "b": "noop", "c": "noop"}, [("a", "b"), ("a", "c")])
    first = Harness(ir)
    second = Harness(ir)
    a1 = first.succeed("a")
    a2 = second.succeed("a")
    assert [e.event_id for e in a1] == [e.event_id for e in a2]
    assert [e.model_dump() for e in a1] == [e.model_dump() for e in a2]
    assert all(e.causation_id == first.log[-len(a1) - 1].event_id for e in a1)


def test_state_round_trips_through_json() -> None:
    h = Harness(condition_ir(), run_input={"k": [1, 2]})
    h.succeed("c", {"result": True})
    raw = h.run.model_dump_json()
    again = RunState.model_validate_json(raw)
    assert again == h.run
    assert isinstance(again.applied, set)


def test_evolve_never_mutates_its_input() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    before = h.run.model_dump()
    state = h.run
    evolve(state, succeeded(h.task("a")))
    assert state.model_dump() == before


def test_no_earlier_state_changes_as_a_run_goes_on() -> None:
    """``evolve`` copies a node shallowly (``run_model.evolve._node``), which holds only
    while nothing changes a node's lists, dicts or models in place: every state a run went
    through must still read as it did, through retries, approvals, waits and model calls."""
    ir = build_ir(
        {"a": "noop", "h": "hitl", "w": "wait_event", "g": "agent"},
        [("a", "h"), ("h", "w"), ("w", "g")],
        max_attempts=3,
    )
    h = Harness(ir)
    states: list[tuple[RunState, dict[str, Any]]] = []

    def feed(event: Event) -> None:
        h.feed(event)
        states.append((h.run, h.run.model_dump()))

    feed(started(h.task("a")))
    feed(failed(h.task("a"), "attempt 1 broke"))  # retried at once: no backoff
    feed(started(h.task("a")))
    feed(succeeded(h.task("a"), {"rows": [1, 2], "meta": {"k": "v"}}))
    feed(started(h.task("h")))
    feed(approval_requested(h.task("h")))
    feed(approval_submitted(h.run.run_id, "h", "approved"))
    feed(started(h.task("w")))
    feed(event_awaited(h.task("w"), "paid", "order-1"))
    feed(event_received(h.run.run_id, "w", "paid", "order-1", {"amount": 3}))
    agent = h.task("g")
    feed(started(agent))
    feed(model_called(agent, 1, 100))
    feed(tool_called(agent, "http", {"url": "x"}, result={"status": 200}))
    feed(model_called(agent, 2, 50))
    feed(succeeded(agent, {"answer": 42}))
    assert h.run.status is RunStatus.COMPLETED
    for state, seen in states:
        assert state.model_dump() == seen


def test_no_state_until_submitted() -> None:
    h = Harness(build_ir({"a": "noop"}, []))
    stray = succeeded(h.task("a"))
    state, decision = step(None, stray, EPOCH)
    assert state is None
    assert not decision


def test_run_started_first() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, []))
    assert isinstance(h.log[1], RunStarted)
    assert h.run.status is RunStatus.RUNNING
    assert sorted(h.open_tasks) == ["a", "b"]
    h.succeed("a")
    assert isinstance(h.succeed("b")[0], RunCompleted)
