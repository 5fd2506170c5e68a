"""Forks in the decider: a new run from another run's history up to a point.

What had finished at the point is kept (outputs reused, never scheduled again); what was in
flight or waiting starts afresh in the fork; the source's state is never touched.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.recovery import rebuild
from run_model import NodeState, NodeStatus, RunState, RunStatus, step
from run_model.evolve import evolve, fold
from run_model.testing import (
    EPOCH,
    approval_requested,
    approval_submitted,
    build_ir,
    run_forked,
    run_submitted,
    started,
    succeeded,
)
from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import (
    ApprovalSubmitted,
    NodeScheduled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunStarted,
)
from schemas.tasks import NodeTask
from tests.unit.test_decider import Harness, types
from tests.unit.test_decider_approvals import waiting


def chain() -> Harness:
    """a -> b -> c, with ``a`` done and ``b`` started (in flight)."""
    h = Harness(
        build_ir({"a": "transform", "b": "transform", "c": "noop"}, [("a", "b"), ("b", "c")]),
        {"topic": "old"},
    )
    h.succeed("a", {"made": "by a"})
    h.feed(started(h.task("b")))
    return h


class Fork:
    """Feeds a fork's events through ``step``, as ``Harness`` does for a submitted run."""

    def __init__(self, forked: RunForked) -> None:
        self.h = Harness.__new__(Harness)
        self.h.state, self.h.log, self.h.open_tasks, self.h.all_tasks = None, [], {}, []
        self.first = self.h.feed(forked)


def fork_of(h: Harness, at_seq: int | None = None, **kw: Any) -> Harness:
    at = len(h.log) if at_seq is None else at_seq
    return Fork(run_forked("fork-1", h.log, at, **kw)).h


def test_the_fork_is_the_source_at_that_point_with_work_in_flight_reset() -> None:
    h = chain()
    source_before = h.run.model_copy(deep=True)
    f = fork_of(h)
    # Re-addressed to the fork, and started by the fork's own RunStarted.
    assert f.run.run_id == "fork-1"
    assert f.run.status is RunStatus.RUNNING
    assert types(f.log) == ["RunForked", "RunStarted", "NodeScheduled"]
    assert isinstance(f.log[1], RunStarted) and f.log[1].aggregate_id == "fork-1"
    # ``a`` is kept whole: status, attempt, output; ``b`` (in flight) starts again, at 1.
    assert f.run.nodes["a"] == h.run.nodes["a"]
    assert f.run.nodes["b"].status is NodeStatus.SCHEDULED
    assert f.run.nodes["b"].scheduled == [1] and f.run.nodes["b"].started == []
    assert f.scheduled() == [("b", 1)]
    assert f.task("b").run_id == "fork-1"
    assert f.task("b").nodes["a"].output == {"made": "by a"}
    assert f.task("b").input == {"topic": "old"}
    # Everything else is the source's state at that point.
    same = {"ir", "definition", "version", "workflow_id", "tenant", "patches", "agent_spawns"}
    assert f.run.model_dump(include=same) == h.run.model_dump(include=same)
    # The source is untouched.
    assert h.run == source_before
    f.succeed("b")
    assert types(f.succeed("c")) == ["RunCompleted"]
    assert h.run.status is RunStatus.RUNNING


def test_the_fork_state_equals_the_source_fold_with_unfinished_nodes_reset() -> None:
    h = chain()
    forked = run_forked("fork-1", h.log, len(h.log))
    state = evolve(None, forked)
    assert state is not None
    source = fold(None, h.log)
    assert source is not None
    expected = {nid: node if node.terminal else NodeState() for nid, node in source.nodes.items()}
    assert state.nodes == expected
    assert state.status is RunStatus.PENDING  # until the decider's RunStarted
    assert state.applied == {forked.event_id}


def test_a_new_input_is_what_nodes_after_the_point_see() -> None:
    h = chain()
    f = fork_of(h, run_input={"topic": "new"}, keep_input=False)
    assert f.run.input == {"topic": "new"}
    assert f.task("b").input == {"topic": "new"}
    assert f.task("b").nodes["a"].output == {"made": "by a"}  # reused, made with the old one


def test_a_waiting_hitl_node_asks_again_in_the_fork() -> None:
    h = waiting()
    f = fork_of(h)
    assert h.status("review") is NodeStatus.WAITING
    assert f.status("review") is NodeStatus.SCHEDULED
    assert f.scheduled() == [("review", 1)]
    assert "draft" not in f.open_tasks
    task = f.open_tasks.pop("review")
    f.feed(started(task))
    f.feed(approval_requested(task))
    assert f.run.status is RunStatus.WAITING
    # A decision sent to the source is not one for the fork, and the other way round.
    f.feed(approval_submitted("fork-1", "review", "rejected", by="bob"))
    assert f.status("drop") is NodeStatus.SCHEDULED
    assert f.status("publish") is NodeStatus.SKIPPED
    assert h.status("review") is NodeStatus.WAITING


def test_fork_before_a_decision_and_decide_the_other_way() -> None:
    h = waiting()
    h.feed(approval_submitted("run-1", "review", "approved"))
    assert types(h.succeed("publish")) == ["RunCompleted"]
    source_log = list(h.log)
    before = next(i for i, e in enumerate(h.log) if isinstance(e, ApprovalSubmitted))
    f = fork_of(h, before)  # the event just before the decision was submitted
    task = f.open_tasks.pop("review")
    f.feed(started(task))
    f.feed(approval_requested(task))
    f.feed(approval_submitted("fork-1", "review", "rejected", by="bob"))
    done = f.succeed("drop")
    assert isinstance(done[-1], RunCompleted)
    assert f.status("publish") is NodeStatus.SKIPPED
    assert f.run.nodes["draft"] == h.run.nodes["draft"]
    assert ("draft", 1) not in f.scheduled()
    assert h.log == source_log and h.run.status is RunStatus.COMPLETED
    assert h.status("publish") is NodeStatus.SUCCEEDED


def test_a_fork_at_the_last_event_of_a_completed_run_completes_at_once() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    h.succeed("a", 1)
    h.succeed("b", 2)
    f = fork_of(h)
    assert types(f.log) == ["RunForked", "RunStarted", "RunCompleted"]
    assert f.log[-1].payload.output == h.log[-1].payload.output == {"b": 2}
    assert f.run.status is RunStatus.COMPLETED and not f.open_tasks


def test_a_fork_after_a_node_failed_for_good_fails_at_once() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    h.fail("a", retryable=False)
    at_failure = next(i for i, e in enumerate(h.log) if type(e).__name__ == "NodeFailed") + 1
    f = fork_of(h, at_failure)  # before the source's RunFailed
    assert types(f.log) == ["RunForked", "RunStarted", "RunFailed"]
    assert isinstance(f.log[-1], RunFailed) and f.log[-1].payload.node_id == "a"
    # Forked just before the failure, it runs again.
    again = fork_of(h, at_failure - 1)
    assert again.scheduled() == [("a", 1)]


def test_a_planned_retry_starts_afresh_in_the_fork() -> None:
    h = Harness(build_ir({"a": "noop"}, [], max_attempts=3, backoff_s=5))
    h.fail("a")
    assert h.run.nodes["a"].retry_due
    f = fork_of(h)
    assert f.scheduled() == [("a", 1)]
    assert f.run.nodes["a"].failures == {} and f.run.nodes["a"].retry_due == {}


def test_a_fork_of_a_fork() -> None:
    h = chain()
    f = fork_of(h)
    f.feed(started(f.task("b")))
    f.feed(succeeded(f.open_tasks.pop("b"), {"made": "by the fork's b"}))
    ff = Fork(run_forked("fork-2", f.log, len(f.log))).h
    assert ff.run.run_id == "fork-2"
    assert ff.run.nodes["b"].output == {"made": "by the fork's b"}
    assert ff.run.nodes["a"].output == {"made": "by a"}
    assert ff.scheduled() == [("c", 1)]
    assert types(ff.succeed("c")) == ["RunCompleted"]


def test_a_duplicate_fork_event_changes_nothing() -> None:
    h = chain()
    forked = run_forked("fork-1", h.log, len(h.log))
    state, _ = step(None, forked, EPOCH)
    again, decision = step(state, forked, EPOCH)
    assert again is state and not decision


def test_recovery_rebuilds_a_forked_run_as_the_coordinator_had_it() -> None:
    h = chain()
    f = fork_of(h)
    f.feed(started(f.task("b")))
    records = [encode_event(ev)[1] for ev in [*h.log, *f.log]]
    rebuilt = rebuild(records, lambda: EPOCH)
    assert rebuilt.states["fork-1"] == f.run
    assert rebuilt.states["run-1"] == h.run


# --- every point of random runs -------------------------------------------------------


def work(task: NodeTask, verdicts: dict[str, bool]) -> list[Event]:
    """A worker, and a person who decides as soon as asked."""
    if task.node_type == "hitl":
        decision = "approved" if verdicts[task.node_id] else "rejected"
        return [
            started(task),
            approval_requested(task),
            approval_submitted(task.run_id, task.node_id, decision),
        ]
    output = {"result": verdicts[task.node_id]} if task.node_type == "condition" else {"n": 1}
    return [started(task), succeeded(task, output)]


def drive(first: Event, verdicts: dict[str, bool]) -> tuple[RunState, list[Event]]:
    """The run's log as the coordinator and workers append it, in order, to the end."""
    log, tasks = [first], deque[NodeTask]()
    state: RunState | None = None
    i = 0
    while i < len(log) or tasks:
        if i < len(log):
            state, decision = step(state, log[i], EPOCH)
            i += 1
            log.extend(decision.events)
            tasks.extend(decision.tasks)
        else:
            log.extend(work(tasks.popleft(), verdicts))
    assert state is not None
    seen: set[str] = set()
    distinct = [e for e in log if not (e.event_id in seen or seen.add(e.event_id))]
    return state, distinct


@st.composite
def dags(draw: st.DrawFn) -> tuple[Any, dict[str, bool]]:
    n = draw(st.integers(1, 8))
    kinds = draw(
        st.lists(
            st.sampled_from(["noop", "transform", "condition", "hitl"]), min_size=n, max_size=n
        )
    )
    nodes = {f"n{i}": kinds[i] for i in range(n)}
    edges: list[tuple[str, str, str | None]] = []
    guards = {"condition": ["true", "false"], "hitl": ["approved", "rejected"]}
    for i in range(1, n):
        for p in sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 2)))):
            when = draw(st.sampled_from(guards[kinds[p]])) if kinds[p] in guards else None
            edges.append((f"n{p}", f"n{i}", when))
    verdicts = {nid: draw(st.booleans()) for nid in nodes}
    return build_ir(nodes, edges), verdicts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_a_fork_at_every_point_finishes_and_reruns_nothing_finished(
    case: tuple[Any, dict[str, bool]],
) -> None:
    ir, verdicts = case
    source, log = drive(run_submitted("run-p", ir, {"seed": 1}), verdicts)
    assert source.status is RunStatus.COMPLETED
    for at in range(1, len(log) + 1):
        point = fold(None, log[:at])
        assert point is not None
        fork, fork_log = drive(run_forked(f"fork-{at}", log, at), verdicts)
        scheduled = [e.payload.node_id for e in fork_log if isinstance(e, NodeScheduled)]
        assert len(scheduled) == len(set(scheduled)), "a node ran twice in the fork"
        kept = {nid for nid, node in point.nodes.items() if node.terminal}
        assert not kept & set(scheduled), "a node finished at the point ran again"
        assert fork.status is RunStatus.COMPLETED
        # Same verdicts, so the same branches: the fork ends where the source ended.
        assert {n: s.status for n, s in fork.nodes.items()} == {
            n: s.status for n, s in source.nodes.items()
        }
        assert all(fork.nodes[n] == point.nodes[n] for n in kept)
