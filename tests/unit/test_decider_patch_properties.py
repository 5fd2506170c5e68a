"""Random patches of random live runs through the decider.

A run of a random DAG is driven to its end by a worker that answers tasks in a random order,
while random patches arrive at random moments: nodes added after any node and before any
other, nodes removed, garbage operations; some events are delivered twice. Whatever the
verdicts, what has been scheduled never changes (its definition and what leads to it), a
refused patch changes nothing, a person is never refused by the agents' policy and an agent
(node n0) never changes what it did not add, the state's IR is always its definition
compiled, and the run completes with every node of its last version run after all its
predecessors, exactly once.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from run_model import NodeStatus, RunState, RunStatus, step
from run_model.testing import EPOCH, build_ir, patch_submitted, run_submitted, started, succeeded
from schemas.compiler import compile_workflow
from schemas.envelope import Event
from schemas.events import (
    NodeScheduled,
    NodeSkipped,
    NodeSucceeded,
    PatchApplied,
    PatchRejected,
    RunCompleted,
)
from schemas.workflow import WorkflowDefinition


def random_patch(rng: random.Random, definition: dict[str, Any], serial: int) -> list[Any]:
    nodes = [n["id"] for n in definition["nodes"]]
    edges = definition["edges"]
    kind = rng.choice(["add", "add", "remove", "garbage"])
    if kind == "add":
        new = f"p{serial}"
        ops: list[Any] = [{"op": "add", "path": "/nodes/-", "value": {"id": new, "type": "noop"}}]
        for source in rng.sample(nodes, k=min(len(nodes), rng.randint(0, 2))):
            ops.append({"op": "add", "path": "/edges/-", "value": {"from": source, "to": new}})
        if rng.random() < 0.5:
            target = rng.choice(nodes)
            ops.append({"op": "add", "path": "/edges/-", "value": {"from": new, "to": target}})
        return ops
    if kind == "remove":
        victim = rng.choice(nodes)
        touching = [i for i, e in enumerate(edges) if victim in (e["from"], e["to"])]
        ops = [{"op": "remove", "path": f"/edges/{i}"} for i in reversed(touching)]
        return [*ops, {"op": "remove", "path": f"/nodes/{nodes.index(victim)}"}]
    return rng.choice(
        [
            [{"op": "remove", "path": f"/nodes/{len(nodes) + 3}"}],
            [{"op": "add", "path": "/edges/-", "value": {"from": nodes[0], "to": nodes[0]}}],
            [{"op": "move", "from": "/nodes", "path": "/edges"}],
            [{"op": "frobnicate"}],
        ]
    )


def incoming(definition: dict[str, Any], node_id: str) -> set[tuple[str, str | None]]:
    return {(e["from"], e.get("when")) for e in definition["edges"] if e["to"] == node_id}


def check_policy(before: RunState, events: list[Event], agent: str | None) -> None:
    """A person's patch is never refused by the agents' policy; an agent's applied patch left
    every node it did not add, and what leads to it, as it was."""
    for event in events:
        if isinstance(event, PatchRejected) and agent is None:
            assert not any("(rule: agent-" in r for r in event.payload.reasons)
        if isinstance(event, PatchApplied) and agent is not None:
            old, new = before.current_definition(), event.payload.definition
            old_nodes = {n["id"]: n for n in old["nodes"]}
            new_nodes = {n["id"]: n for n in new["nodes"]}
            own = {n for n, author in before.authored_by.items() if author == agent}
            for node_id in set(old_nodes) - own:
                assert new_nodes.get(node_id) == old_nodes[node_id], node_id
                assert incoming(new, node_id) == incoming(old, node_id), node_id


def check_patch(before: RunState, after: RunState, events: list[Event]) -> None:
    if after.patches:  # the first version's IR is the test's own (``build_ir``)
        assert after.ir == compile_workflow(WorkflowDefinition.model_validate(after.definition))
    if not any(isinstance(e, PatchApplied) for e in events):
        assert (after.ir, after.version, after.definition) == (
            before.ir,
            before.version,
            before.definition,
        )
        return
    old, new = before.current_definition(), after.current_definition()
    old_nodes = {n["id"]: n for n in old["nodes"]}
    new_nodes = {n["id"]: n for n in new["nodes"]}
    for node_id, node in before.nodes.items():
        if node.status is NodeStatus.PENDING:
            continue
        assert new_nodes.get(node_id) == old_nodes[node_id], node_id
        assert incoming(new, node_id) == incoming(old, node_id), node_id
        assert after.nodes[node_id].status is node.status or not node.terminal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 12), st.randoms(use_true_random=False), st.sampled_from([None, "n0"]))
def test_random_patches_of_live_runs_keep_the_past_and_the_run_completes(
    n: int, rng: random.Random, agent: str | None
) -> None:
    nodes = {f"n{i}": "noop" for i in range(n)}
    edges: list[tuple[str, str]] = [
        (f"n{p}", f"n{i}") for i in range(1, n) for p in rng.sample(range(i), k=min(i, 2))
    ]
    state, decision = step(None, run_submitted("run-1", build_ir(nodes, edges)), EPOCH)
    assert state is not None
    log: list[Event] = list(decision.events)
    tasks = list(decision.tasks)
    serial = 0
    while not state.finished:
        if tasks and rng.random() < 0.6:
            task = tasks.pop(rng.randrange(len(tasks)))
            incoming_events: list[Event] = [started(task), succeeded(task, task.node_id)]
        else:
            serial += 1
            ops = random_patch(rng, state.current_definition(), serial)
            incoming_events = [patch_submitted("run-1", ops, agent_node=agent, tag=str(serial))]
        again = [rng.choice(log)] if log and rng.random() < 0.2 else []  # a duplicate, an echo
        for event in [*incoming_events, *again]:
            before = state
            state, decision = step(state, event, EPOCH)
            assert state is not None
            check_patch(before, state, decision.events)
            check_policy(before, decision.events, agent)
            if event not in again:
                log.append(event)
            assert not (event in again and decision), "a duplicate was decided on again"
            log.extend(decision.events)
            tasks.extend(decision.tasks)
        assert tasks or state.finished, "nothing in flight, yet the run has not ended"

    assert state.status is RunStatus.COMPLETED
    assert sum(isinstance(e, RunCompleted) for e in log) == 1
    finished_at: dict[str, int] = {}
    scheduled_at: dict[str, int] = {}
    for i, event in enumerate(log):
        if isinstance(event, NodeScheduled):
            assert event.payload.node_id not in scheduled_at, "scheduled twice"
            scheduled_at[event.payload.node_id] = i
        elif isinstance(event, NodeSucceeded | NodeSkipped):
            finished_at.setdefault(event.payload.node_id, i)
    for node_id, node in state.ir.nodes.items():
        assert state.nodes[node_id].status in (NodeStatus.SUCCEEDED, NodeStatus.SKIPPED)
        if node_id in scheduled_at:
            for edge in node.predecessors:
                assert finished_at[edge.node] < scheduled_at[node_id], (edge.node, node_id)
