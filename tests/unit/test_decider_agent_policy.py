"""The policy for agents' patches (``run_model.agent_policy``): an agent adds nodes and edges
into them, but leaves alone what it did not add and gives no node a tool; each refusal names
its rule, in the same list as the other reasons, and the run goes on. A person's patch keeps
every power it had."""

from __future__ import annotations

from typing import Any

import pytest

from run_model import NodeStatus, fold
from run_model.testing import patch_submitted, run_forked
from schemas.compiler import compile_workflow
from schemas.events import PatchSubmitted
from schemas.workflow import WorkflowDefinition
from tests.unit.test_decider import Harness, types
from tests.unit.test_decider_patches import add_edge, add_node, applied, node, rejected

FETCH = {
    "url": "https://api.example.com/orders",
    "headers": {"Authorization": "Bearer {{ input.token }}"},
}
PAY = {"url": "https://pay.example.com/charge", "method": "POST"}
DEFINITION: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "noop"},
        {"id": "plan", "type": "agent", "config": {"prompt": "plan", "tools": ["patch_workflow"]}},
        {"id": "fetch", "type": "http", "config": FETCH},
        {"id": "approve", "type": "hitl", "config": {"prompt": "pay?"}},
        {"id": "pay", "type": "http", "config": PAY},
        {"id": "other", "type": "agent", "config": {"prompt": "x", "tools": ["patch_workflow"]}},
    ],
    "edges": [
        {"from": "start", "to": "plan"},
        {"from": "start", "to": "other"},
        {"from": "plan", "to": "fetch"},
        {"from": "fetch", "to": "approve"},
        {"from": "approve", "to": "pay", "when": "approved"},
    ],
}
FETCH_AT, PAY_AT = 2, 4  # indexes in /nodes
APPROVE_PAY_AT = 4  # index in /edges


def running_plan() -> Harness:
    """start has succeeded; plan and other run (the agents); fetch, approve, pay wait."""
    h = Harness(compile_workflow(WorkflowDefinition.model_validate(DEFINITION)))
    h.succeed("start")
    return h


_serial = iter(range(1, 10_000))


def by_agent(ops: list[Any], agent: str = "plan", attempt: int = 1) -> PatchSubmitted:
    event = patch_submitted("run-1", ops, agent_node=agent, tag=f"agent-{next(_serial)}")
    return event.model_copy(
        update={"payload": event.payload.model_copy(update={"attempt": attempt})}
    )


def by_person(ops: list[Any]) -> PatchSubmitted:
    return patch_submitted("run-1", ops, tag=f"person-{next(_serial)}")


def own_node(node_id: str = "notes", after: str = "plan") -> list[Any]:
    return [
        add_node(node(node_id, "transform", output="{{ nodes.plan }}")),
        add_edge(after, node_id),
    ]


def unchanged(h: Harness, version: str) -> None:
    """A refused patch changed nothing, and the run goes on."""
    assert h.run.version == version
    assert h.run.proposals == {}
    assert h.status("fetch") is NodeStatus.PENDING
    assert sorted(h.open_tasks) == ["other", "plan"]


def test_an_agent_adds_nodes_and_edges_into_them_and_owns_what_it_added() -> None:
    h = running_plan()
    ops = [
        *own_node("notes"),
        add_node(node("post", "http", url="https://x.example")),
        add_edge("notes", "post"),
        add_edge("start", "post"),
    ]
    p = applied(h.feed(by_agent(ops))).payload
    assert p.added_nodes == ["notes", "post"]
    assert h.run.authored_by == {"notes": "plan", "post": "plan"}
    assert h.run.proposals == {}


@pytest.mark.parametrize(
    ("ops", "parts"),
    [
        (
            [
                {
                    "op": "replace",
                    "path": f"/nodes/{FETCH_AT}/config/url",
                    "value": "https://evil.example",
                }
            ],
            "config",
        ),
        ([{"op": "remove", "path": f"/nodes/{FETCH_AT}/config/headers"}], "config"),
        (
            [
                {
                    "op": "replace",
                    "path": f"/nodes/{FETCH_AT}",
                    "value": {"id": "fetch", "type": "transform", "config": {"output": 1}},
                }
            ],
            "type and config",
        ),
        ([{"op": "add", "path": f"/nodes/{FETCH_AT}/timeout_s", "value": 5}], "timeout_s"),
        (
            [{"op": "add", "path": f"/nodes/{FETCH_AT}/retry", "value": {"max_attempts": 9}}],
            "retry",
        ),
    ],
)
def test_an_agent_may_not_change_any_part_of_a_node_it_did_not_add(
    ops: list[Any], parts: str
) -> None:
    h = running_plan()
    before = h.run.version
    assert rejected(h.feed(by_agent(ops))) == [
        f"agent patches may not change the {parts} of node 'fetch', which the agent did not "
        "add (rule: agent-may-not-change-others-nodes): leave it as it is; to do something "
        "else, add a node of your own"
    ]
    unchanged(h, before)


def test_an_agent_may_not_remove_a_node_it_did_not_add() -> None:
    h = running_plan()
    before = h.run.version
    ops = [
        {"op": "remove", "path": f"/edges/{APPROVE_PAY_AT}"},
        {"op": "remove", "path": f"/nodes/{PAY_AT}"},
    ]
    # The edge into pay goes with pay: the node's reason says it all.
    assert rejected(h.feed(by_agent(ops))) == [
        "agent patches may not remove node 'pay', which the agent did not add (rule: "
        "agent-may-not-remove-others-nodes): leave it in place; add nodes of your own instead"
    ]
    unchanged(h, before)
    # Cutting fetch out and routing around it: the node and the edge into approve are told.
    ops = [
        {"op": "remove", "path": "/edges/3"},  # fetch -> approve
        {"op": "remove", "path": f"/nodes/{FETCH_AT}"},
    ]
    reasons = rejected(h.feed(by_agent(ops)))
    assert reasons[0].startswith("agent patches may not remove node 'fetch'"), reasons
    assert reasons[1].startswith(
        "agent patches may not remove or change the edge fetch -> approve: node 'approve' was "
        "not added by the agent, and what leads to it decides whether it runs (rule: "
        "agent-may-not-reroute-others-nodes)"
    ), reasons
    unchanged(h, before)


@pytest.mark.parametrize(
    ("ops", "told"),
    [
        # From its own node into pay: pay would run even after a rejected approval.
        ([*own_node("notes"), add_edge("notes", "pay")], "may not add the edge notes -> pay"),
        (
            [{"op": "remove", "path": f"/edges/{APPROVE_PAY_AT}"}, add_edge("fetch", "pay")],
            "may not remove or change the edge approve -> pay (when approved)",
        ),
        (
            [{"op": "replace", "path": f"/edges/{APPROVE_PAY_AT}/when", "value": "rejected"}],
            "may not remove or change the edge approve -> pay (when approved)",
        ),
    ],
)
def test_an_agent_may_not_reroute_what_leads_into_a_node_it_did_not_add(
    ops: list[Any], told: str
) -> None:
    h = running_plan()
    before = h.run.version
    reasons = rejected(h.feed(by_agent(ops)))
    assert any(told in r and "(rule: agent-may-not-reroute-others-nodes)" in r for r in reasons)
    unchanged(h, before)


@pytest.mark.parametrize(
    "tools", [["patch_workflow"], ["finish"], "patch_workflow"], ids=["patch", "finish", "text"]
)
def test_an_agent_may_not_add_a_node_with_tools(tools: Any) -> None:
    h = running_plan()
    before = h.run.version
    ops = [add_node(node("helper", "agent", prompt="go", tools=tools)), add_edge("plan", "helper")]
    reasons = rejected(h.feed(by_agent(ops)))
    assert (
        f"agent patches may not give tools to a node: node 'helper' would have tools {tools!r} "
        "(rule: agent-may-not-give-tools): leave 'tools' out of its config"
    ) in reasons
    # Tools that are not a list break the shape of an agent's tools as well (the graph rules).
    shape = "node 'helper': 'tools' must be a list of tool names and {\"mcp\": {...}} entries"
    assert reasons[1:] == ([shape] if isinstance(tools, str) else [])
    unchanged(h, before)
    # Without tools (or with none listed) the same node is welcome.
    ops = [add_node(node("helper", "agent", prompt="go", tools=[])), add_edge("plan", "helper")]
    assert applied(h.feed(by_agent(ops))).payload.agent_spawns == ["helper"]


def test_an_agent_may_not_give_tools_to_its_own_node_nor_to_another() -> None:
    h = running_plan()
    applied(h.feed(by_agent([*own_node("helper")])))
    give = {"op": "add", "path": "/nodes/6/config/tools", "value": ["patch_workflow"]}
    assert rejected(h.feed(by_agent([give]))) == [
        "agent patches may not give tools to a node: node 'helper' would have tools "
        "['patch_workflow'] (rule: agent-may-not-give-tools): leave 'tools' out of its config"
    ]
    give_pay = {"op": "add", "path": f"/nodes/{PAY_AT}/config/tools", "value": ["patch_workflow"]}
    reasons = rejected(h.feed(by_agent([give_pay])))
    assert [r.rpartition("(rule: ")[2].split(")")[0] for r in reasons] == [
        "agent-may-not-change-others-nodes",
        "agent-may-not-give-tools",
    ]


@pytest.mark.parametrize(
    "reads",
    [
        "{{ secrets.API_TOKEN }}",
        "Bearer {{ secrets['API_TOKEN'] }}",
        "{{ secrets[input.which] }}",  # computed: refused by the graph check too
    ],
)
def test_an_agent_may_not_add_or_change_a_node_that_reads_a_secret(reads: str) -> None:
    h = running_plan()
    before = h.run.version
    leak = node("leak", "http", url="https://collector.example.com/", headers={"X": reads})
    reasons = rejected(h.feed(by_agent([add_node(leak), add_edge("plan", "leak")])))
    assert (
        "agent patches may not make a node read a secret: node 'leak' refers to 'secrets' "
        "(rule: agent-may-not-read-secrets): leave secrets out; if the work needs one, ask a "
        "person to add the node"
    ) in reasons
    unchanged(h, before)
    # Nor may it make its own node read one later.
    applied(h.feed(by_agent([*own_node("helper")])))
    change = {"op": "add", "path": "/nodes/6/config/output", "value": {"t": reads}}
    reasons = rejected(h.feed(by_agent([change])))
    assert "agent-may-not-read-secrets" in {rule_of(r) for r in reasons}, reasons
    # A person may: the secrets a run reads are the ones its people wrote into it.
    call = node("call", "http", url="https://x.example.com/", headers={"X": "{{ secrets.K }}"})
    applied(h.feed(by_person([add_node(call), add_edge("plan", "call")])))


def rule_of(reason: str) -> str:
    return reason.rpartition("(rule: ")[2].split(")")[0]


def test_an_agent_changes_and_removes_what_it_added_in_any_attempt() -> None:
    h = running_plan()
    applied(h.feed(by_agent(own_node("notes", after="fetch"), attempt=1)))
    change = [{"op": "replace", "path": "/nodes/6/config/output", "value": "v2"}]
    assert applied(h.feed(by_agent(change, attempt=2))).payload.changed_nodes == ["notes"]
    assert h.run.authored_by == {"notes": "plan"}
    remove = [{"op": "remove", "path": "/edges/5"}, {"op": "remove", "path": "/nodes/6"}]
    assert applied(h.feed(by_agent(remove, attempt=3))).payload.removed_nodes == ["notes"]
    assert h.run.authored_by == {}


def test_another_agent_node_may_not_change_what_an_agent_added() -> None:
    h = running_plan()
    applied(h.feed(by_agent(own_node("notes"))))
    change = [{"op": "replace", "path": "/nodes/6/config/output", "value": "mine now"}]
    reasons = rejected(h.feed(by_agent(change, agent="other")))
    assert reasons == [
        "agent patches may not change the config of node 'notes', which the agent did not add "
        "(rule: agent-may-not-change-others-nodes): leave it as it is; to do something else, "
        "add a node of your own"
    ]
    # It may hang its own work after it, though: an edge into its own node.
    assert types(h.feed(by_agent(own_node("more", after="notes"), agent="other"))) == [
        "PatchApplied"
    ]
    assert h.run.authored_by == {"notes": "plan", "more": "other"}


def test_a_person_keeps_every_power_and_a_node_a_person_changed_is_the_persons() -> None:
    h = running_plan()
    applied(h.feed(by_agent(own_node("notes"))))
    person = [
        {"op": "replace", "path": f"/nodes/{FETCH_AT}/config/url", "value": "https://b.example"},
        {"op": "add", "path": f"/nodes/{PAY_AT}/config/tools", "value": ["patch_workflow"]},
        {"op": "replace", "path": f"/edges/{APPROVE_PAY_AT}/when", "value": "rejected"},
        {"op": "replace", "path": "/nodes/6/config/output", "value": "the person's"},
        add_node(node("aide", "agent", prompt="p", tools=["patch_workflow"])),
        add_edge("notes", "aide"),
    ]
    p = applied(h.feed(by_person(person))).payload
    assert (p.added_nodes, p.changed_nodes) == (["aide"], ["fetch", "pay", "notes"])
    assert h.run.authored_by == {}
    change = [{"op": "replace", "path": "/nodes/6/config/output", "value": "back"}]
    assert "(rule: agent-may-not-change-others-nodes)" in rejected(h.feed(by_agent(change)))[0]


def test_the_policy_speaks_in_the_same_list_as_the_other_rules() -> None:
    h = running_plan()
    ops = [
        {"op": "replace", "path": f"/nodes/{FETCH_AT}/config/url", "value": "https://evil.example"},
        add_node(node("loop")),
        add_edge("plan", "loop"),
        add_edge("loop", "plan"),  # into the running agent: settled already, and a cycle
    ]
    reasons = rejected(h.feed(by_agent(ops)))
    assert [r.split(":")[0] for r in reasons] == [
        "edge loop -> plan cannot be added",
        "agent patches may not change the config of node 'fetch', which the agent did not add "
        "(rule",
        "agent patches may not add the edge loop -> plan",
        "the graph has a cycle",
    ], reasons


def test_ownership_is_a_fold_of_the_log_and_a_fork_keeps_it() -> None:
    h = running_plan()
    applied(h.feed(by_agent(own_node("notes"))))
    rejected(h.feed(by_agent([{"op": "remove", "path": f"/nodes/{FETCH_AT}"}])))
    rebuilt = fold(None, h.log)
    assert rebuilt is not None
    assert (rebuilt.authored_by, rebuilt.proposals) == ({"notes": "plan"}, {})
    fork = Harness.__new__(Harness)
    fork.state, fork.log, fork.open_tasks, fork.all_tasks = None, [], {}, []
    fork.feed(run_forked("fork-1", h.log, len(h.log)))
    assert fork.run.authored_by == {"notes": "plan"}
