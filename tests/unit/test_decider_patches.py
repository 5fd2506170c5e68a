"""Patches of a live run in the decider: judged whole, applied to the next version at once,
or refused with reasons that say what to change."""

from __future__ import annotations

from typing import Any

import pytest

from run_model import NodeStatus, RunStatus
from run_model.decide import refuse_after_finish, step
from run_model.patching import PatchLimits
from run_model.testing import (
    EPOCH,
    build_ir,
    cancel_requested,
    patch_submitted,
    started,
)
from schemas.canonical import json_ref
from schemas.compiler import compile_workflow
from schemas.events import PatchApplied, PatchRejected
from schemas.workflow import WorkflowDefinition
from tests.unit.test_decider import Harness, types


def chain() -> Harness:
    """a -> b -> c, with a scheduled."""
    return Harness(build_ir({"a": "noop", "b": "noop", "c": "noop"}, [("a", "b"), ("b", "c")]))


def node(node_id: str, kind: str = "noop", **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, **({"config": config} if config else {})}


def add_node(value: dict[str, Any]) -> dict[str, Any]:
    return {"op": "add", "path": "/nodes/-", "value": value}


def add_edge(source: str, target: str, when: str | None = None) -> dict[str, Any]:
    edge = {"from": source, "to": target, **({"when": when} if when else {})}
    return {"op": "add", "path": "/edges/-", "value": edge}


def applied(events: list[Any]) -> PatchApplied:
    found = [e for e in events if isinstance(e, PatchApplied)]
    assert len(found) == 1, types(events)
    return found[0]


def rejected(events: list[Any]) -> list[str]:
    found = [e for e in events if isinstance(e, PatchRejected)]
    assert len(found) == 1, types(events)
    return found[0].payload.reasons


def test_a_node_inserted_between_two_pending_nodes_runs_in_between() -> None:
    h = chain()
    before = h.run.version
    ops = [
        {"op": "remove", "path": "/edges/1"},  # b -> c
        add_node(node("x", "transform", output={"via": "x"})),
        add_edge("b", "x"),
        add_edge("x", "c"),
    ]
    out = h.feed(patch_submitted("run-1", ops, "check b before c"))
    p = applied(out).payload
    assert (p.from_version, p.added_nodes, p.removed_nodes) == (before, ["x"], [])
    assert p.to_version == compile_workflow(WorkflowDefinition.model_validate(p.definition)).version
    assert p.definition_ref == json_ref(p.definition)
    assert p.ir_ref == json_ref(p.ir.model_dump(mode="json"))
    assert h.run.version == p.to_version
    assert h.status("x") is NodeStatus.PENDING
    assert not h.open_tasks.keys() - {"a"}  # nothing new is ready yet
    h.succeed("a")
    h.succeed("b")
    assert list(h.open_tasks) == ["x"]
    h.succeed("x", {"via": "x"})
    assert h.task("c").nodes["x"].output == {"via": "x"}
    done = h.succeed("c")
    assert types(done) == ["RunCompleted"]
    assert [n for n, _ in h.scheduled()] == ["a", "b", "x", "c"]


def test_a_node_added_after_a_finished_node_is_scheduled_at_once() -> None:
    h = chain()
    h.succeed("a")  # b is scheduled now
    out = h.feed(patch_submitted("run-1", [add_node(node("audit")), add_edge("a", "audit")]))
    assert types(out) == ["PatchApplied", "NodeScheduled"]
    assert out[1].payload.node_id == "audit"
    assert set(h.open_tasks) == {"b", "audit"}
    h.succeed("b")
    h.succeed("c")
    done = h.succeed("audit", "audited")
    assert types(done) == ["RunCompleted"]
    assert done[0].payload.output == {"c": None, "audit": "audited"}


def test_a_join_that_loses_its_pending_predecessor_runs_at_once() -> None:
    # s -> m -> slow -> j and a -> j; a has finished, s is scheduled, slow is pending.
    ir = build_ir(
        {"a": "noop", "s": "noop", "m": "noop", "slow": "noop", "j": "noop"},
        [("a", "j"), ("s", "m"), ("m", "slow"), ("slow", "j")],
    )
    h = Harness(ir)
    h.succeed("a")
    assert h.status("j") is NodeStatus.PENDING
    ops = [{"op": "remove", "path": "/edges/3"}, {"op": "remove", "path": "/edges/2"}]
    ops.append({"op": "remove", "path": "/nodes/3"})  # slow
    out = h.feed(patch_submitted("run-1", ops, "slow is not needed"))
    assert applied(out).payload.removed_nodes == ["slow"]
    assert "slow" not in h.run.nodes
    assert h.status("j") is NodeStatus.SCHEDULED


def test_a_join_that_gains_a_predecessor_waits_for_it() -> None:
    h = chain()
    out = h.feed(patch_submitted("run-1", [add_node(node("extra")), add_edge("a", "extra")]))
    applied(out)
    h.feed(patch_submitted("run-1", [add_edge("extra", "c")], tag="2"))
    h.succeed("a")
    assert set(h.open_tasks) == {"b", "extra"}
    h.succeed("b")
    assert "c" not in h.open_tasks  # extra is still running
    h.succeed("extra")
    assert "c" in h.open_tasks


def test_a_patch_that_makes_a_cycle_is_refused_and_changes_nothing() -> None:
    h = chain()
    before = h.run.model_copy(deep=True)
    out = h.feed(patch_submitted("run-1", [add_edge("c", "b")]))
    reasons = rejected(out)
    assert reasons == ["the graph has a cycle: b -> c -> b"]
    assert out[0].payload.current_version == before.version
    assert h.run.ir == before.ir and h.run.version == before.version
    assert h.run.nodes == before.nodes


def test_a_finished_node_cannot_change_nor_lose_its_edges() -> None:
    h = chain()
    h.succeed("a")
    h.feed(started(h.task("b")))
    ops = [
        {"op": "add", "path": "/nodes/0/config", "value": {"x": 1}},
        {"op": "replace", "path": "/nodes/1/type", "value": "transform"},
        {"op": "remove", "path": "/edges/0"},
        add_edge("a", "c"),
    ]
    reasons = rejected(h.feed(patch_submitted("run-1", ops)))
    assert reasons == [
        "node 'a' cannot be changed: it has finished (SUCCEEDED); only nodes not yet "
        "scheduled can change",
        "node 'b' cannot be changed: it has started (RUNNING); only nodes not yet scheduled "
        "can change",
        "edge a -> b cannot be removed or changed: node 'a' has finished (SUCCEEDED)",
    ]
    # A new edge out of a finished node is fine, and into a pending one too.
    assert types(h.feed(patch_submitted("run-1", [add_edge("a", "c")], tag="2"))) == [
        "PatchApplied"
    ]


def test_nothing_may_be_added_before_a_node_that_has_started() -> None:
    h = chain()
    h.succeed("a")
    ops = [add_node(node("late")), add_edge("a", "late"), add_edge("late", "b")]
    reasons = rejected(h.feed(patch_submitted("run-1", ops)))
    assert reasons == [
        "edge late -> b cannot be added: node 'b' is scheduled already (SCHEDULED), so what "
        "leads to it is settled"
    ]


def test_removing_a_started_node_is_refused() -> None:
    h = chain()
    reasons = rejected(h.feed(patch_submitted("run-1", [{"op": "remove", "path": "/nodes/0"}])))
    assert "node 'a' cannot be removed: it is scheduled already (SCHEDULED)" in reasons


def test_a_node_nothing_leads_to_is_refused() -> None:
    h = chain()
    reasons = rejected(h.feed(patch_submitted("run-1", [add_node(node("island"))])))
    assert reasons == [
        "node 'island' has no incoming edge, so nothing would ever start it: add an edge to it "
        "from a node of the run"
    ]


def test_a_patch_over_the_operation_limit_is_refused_before_it_is_applied() -> None:
    h = chain()
    ops = [{"op": "test", "path": "/nodes/0/id", "value": "a"}] * 1_001
    assert rejected(h.feed(patch_submitted("run-1", ops))) == [
        "the patch has 1001 operations; one patch may have at most 1000: split it into "
        "smaller patches"
    ]
    ops = [*ops[:999], add_node(node("ok")), add_edge("c", "ok")]
    assert len(ops) == 1_001 - 1 + 1
    small = h.feed(patch_submitted("run-1", ops[-2:], tag="2"))
    assert types(small) == ["PatchApplied"]


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([{"op": "bogus", "path": "/nodes/-"}], "operation 0 (bogus /nodes/-): Unknown operation"),
        ([{"op": "add", "path": "/nodes/-"}], "does not contain a 'value' member"),
        ([{"op": "remove", "path": "/edges/9"}], "operation 0 (remove /edges/9): can't remove"),
        (["not an object"], "operation 0"),
        ([{"op": "add", "path": "nodes", "value": 1}], "Location must start with /"),
        (
            [{"op": "test", "path": "/nodes/0/id", "value": "z"}, add_node(node("q"))],
            "operation 0 (test /nodes/0/id): the test failed",
        ),
        (
            [add_node({"id": "bad id", "type": "noop"}), add_edge("c", "bad id")],
            "the patched definition is not valid at /nodes/3/id",
        ),
        ([add_node(node("q", "teleport")), add_edge("c", "q")], "unknown type 'teleport'"),
        ([add_node(node("q", "hitl")), add_edge("c", "q")], "needs config.prompt"),
        ([add_node(node("q")), add_edge("c", "q", "true")], "edges take no guard"),
        ([add_edge("c", "ghost")], "refers to node 'ghost', which does not exist"),
        (
            [add_node(node("q")), {"op": "remove", "path": "/nodes/3"}],
            "the patch changes nothing",
        ),
    ],
)
def test_malformed_and_invalid_patches_are_refused_with_a_reason(
    ops: list[Any], reason: str
) -> None:
    h = chain()
    reasons = rejected(h.feed(patch_submitted("run-1", ops)))
    assert any(reason in r for r in reasons), reasons
    assert h.run.patches == []


def agent_nodes(start: int, count: int, after: str = "c") -> list[dict[str, Any]]:
    ops = []
    for i in range(start, start + count):
        ops += [add_node(node(f"helper{i}", "agent", prompt="help")), add_edge(after, f"helper{i}")]
    return ops


def test_agents_may_add_five_agent_nodes_to_a_run_and_no_sixth() -> None:
    h = chain()
    out = h.feed(patch_submitted("run-1", agent_nodes(1, 5), agent_node="b"))
    assert applied(out).payload.agent_spawns == [f"helper{i}" for i in range(1, 6)]
    reasons = rejected(h.feed(patch_submitted("run-1", agent_nodes(6, 1), agent_node="b", tag="2")))
    assert reasons == [
        "agents may add at most 5 agent nodes to one run and have added 5; this patch would "
        "add 1 more (helper6): do the work in this node, or finish and leave the rest to a "
        "person"
    ]
    # A person is not bound by the agents' limit, and a non-agent node is no spawn.
    assert types(h.feed(patch_submitted("run-1", agent_nodes(6, 1), tag="3"))) == ["PatchApplied"]
    more = [add_node(node("plain", "transform", output={})), add_edge("c", "plain")]
    assert types(h.feed(patch_submitted("run-1", more, agent_node="b", tag="4"))) == [
        "PatchApplied"
    ]
    assert h.run.agent_spawns == [f"helper{i}" for i in range(1, 6)]


def test_the_spawn_limit_and_operation_limit_are_settings() -> None:
    h = chain()
    limits = PatchLimits(max_ops=2, agent_spawn_limit=0)
    event = patch_submitted("run-1", agent_nodes(1, 1), agent_node="b")
    _, decision = step(h.state, event, EPOCH, limits)
    assert "at most 0 agent nodes" in rejected(decision.events)[0]
    event = patch_submitted("run-1", [*agent_nodes(1, 1), add_edge("a", "c")], tag="2")
    _, decision = step(h.state, event, EPOCH, limits)
    assert "at most 2" in rejected(decision.events)[0]


def test_two_patches_at_once_are_judged_in_turn_each_against_the_right_version() -> None:
    h = chain()
    v0 = h.run.version
    first = patch_submitted("run-1", [add_node(node("x")), add_edge("a", "x")], base_version=v0)
    second = patch_submitted(
        "run-1", [add_node(node("y")), add_edge("a", "y")], base_version=v0, tag="2"
    )
    third = patch_submitted("run-1", [add_node(node("z")), add_edge("x", "z")], tag="3")
    v1 = applied(h.feed(first)).payload.to_version
    out = h.feed(second)
    (refusal,) = out
    assert isinstance(refusal, PatchRejected)
    assert refusal.payload.reasons == [
        f"the patch was written against version {v0}, but the run is at version {v1} now "
        "(another patch was applied since): write it again against the current definition"
    ]
    assert refusal.payload.current_version == v1
    assert refusal.payload.current_definition == h.run.definition
    p3 = applied(h.feed(third)).payload  # no base version: judged against v1, x is there
    assert (p3.from_version, p3.added_nodes) == (v1, ["z"])
    assert h.run.patches == [first.event_id, third.event_id]


def test_a_patch_delivered_twice_is_judged_once() -> None:
    h = chain()
    event = patch_submitted("run-1", [add_node(node("x")), add_edge("a", "x")])
    assert types(h.feed(event)) == ["PatchApplied"]
    assert h.feed(event) == []


def test_a_run_being_cancelled_or_finished_takes_no_patch() -> None:
    h = chain()
    h.feed(cancel_requested("run-1"))
    assert h.run.status is RunStatus.CANCELLED
    late = patch_submitted("run-1", [add_node(node("x")), add_edge("a", "x")])
    refusal = refuse_after_finish(late, h.run.status, EPOCH)
    assert isinstance(refusal, PatchRejected)
    assert refusal.payload.reasons == ["the run is CANCELLED: it takes no more patches"]
    assert refusal.causation_id == late.event_id


def test_an_agent_that_may_patch_is_given_the_definition_it_patches() -> None:
    h = Harness(build_ir({"a": "noop", "b": "noop"}, [("a", "b")]))
    ops = [
        add_node(node("planner", "agent", prompt="plan", tools=["patch_workflow"])),
        add_node(node("writer", "agent", prompt="write")),
        add_edge("a", "planner"),
        add_edge("a", "writer"),
    ]
    version = applied(h.feed(patch_submitted("run-1", ops))).payload.to_version
    h.succeed("a")
    planner, writer = h.task("planner"), h.task("writer")
    assert planner.version == writer.version == version
    assert planner.definition == h.run.definition
    assert [n["id"] for n in planner.definition["nodes"]] == ["a", "b", "planner", "writer"]
    assert writer.definition is None
    assert planner.scheduled_at == EPOCH


def test_a_run_submitted_before_definitions_were_carried_can_be_patched() -> None:
    h = chain()
    assert h.state is not None
    h.state = h.run.model_copy(update={"definition": None})  # a state stored by v1
    out = h.feed(patch_submitted("run-1", [add_node(node("x")), add_edge("c", "x")]))
    definition = applied(out).payload.definition
    assert [n["id"] for n in definition["nodes"]] == ["a", "b", "c", "x"]
    assert definition["edges"][-1] == {"from": "c", "to": "x"}


def test_a_version_too_large_to_travel_in_an_event_is_refused() -> None:
    h = chain()
    big = node("big", "transform", output={"text": "x" * 600_000})
    reasons = rejected(h.feed(patch_submitted("run-1", [add_node(big), add_edge("c", "big")])))
    assert len(reasons) == 1
    assert reasons[0].startswith("the patched workflow would take 12")
    assert reasons[0].endswith("a version of a run may take at most 934464: make configs smaller")
