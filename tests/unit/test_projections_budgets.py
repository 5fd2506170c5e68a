"""Agent budgets in the read model, folded from the events the decider really decides: the
rows keep step with the run model, a node waiting on the budget has an approval row of kind
BUDGET, a raise moves the run's budget and the node on to its next attempt, and the calls'
cost is summed."""

from __future__ import annotations

import dataclasses

from projections.runs import RunFold
from query_api.approval_types import Approval
from query_api.node_types import Node, Spend
from query_api.run_types import Run
from run_model import evolve
from run_model.testing import approval_submitted
from schemas.budgets import BudgetRaise
from tests.unit.test_decider_budgets import Agents, limits, one_agent


def fold(h: Agents) -> RunFold:
    f = RunFold()
    for ev in h.log:
        f.apply(ev)
    return f


def waited_raised_and_finished() -> Agents:
    h = one_agent(limits(1000, on_exceed="wait"))
    h.turns("write", 300)
    h.feed(approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=2000)))
    h.start("write")
    h.ask("write", 1)
    h.call("write", 1, 300, cost=0.25)
    h.succeed("write", {"text": "done"})
    h.succeed("after")
    return h


def test_rows_keep_step_with_the_run_model_through_a_wait_and_a_raise() -> None:
    h = waited_raised_and_finished()
    f, state = RunFold(), None
    seen = set()
    for ev in h.log:
        f.apply(ev)
        state = evolve(state, ev)
        assert state is not None
        seen.add((state.status.value, state.nodes["write"].status.value))
        assert f.runs["run-1"].status == state.status.value, ev.type
        for node_id, node in state.nodes.items():
            assert f.nodes[("run-1", node_id)].status == node.status.value, (ev.type, node_id)
    assert ("WAITING", "WAITING") in seen
    assert f.runs["run-1"].status == "COMPLETED"


def test_a_node_waiting_on_the_budget_has_an_approval_of_kind_budget() -> None:
    h = one_agent(limits(1000, on_exceed="wait"))
    h.turns("write", 300)
    f = fold(h)
    a = f.approvals[("run-1", "write")]
    assert (a.kind, a.status, a.attempt) == ("BUDGET", "WAITING", 1)
    assert a.reason is not None and a.reason.startswith("budget exceeded: 900 of 1000 tokens")
    assert a.prompt == "raise the run's budget so that node 'write' can go on?"
    assert f.nodes[("run-1", "write")].status == "WAITING"
    assert f.runs["run-1"].budget == {"tokens": 1000, "usd": None, "on_exceed": "wait"}


def test_a_raise_is_recorded_on_the_approval_and_the_run_and_the_node_runs_again() -> None:
    h = waited_raised_and_finished()
    f = fold(h)
    a = f.approvals[("run-1", "write")]
    assert (a.kind, a.status, a.decision, a.decided_by) == (
        "BUDGET",
        "APPROVED",
        "approved",
        "alice",
    )
    assert f.runs["run-1"].budget == {"tokens": 2000, "usd": None, "on_exceed": "wait"}
    node = f.nodes[("run-1", "write")]
    assert (node.status, node.attempts) == ("SUCCEEDED", 2)
    assert node.output == {"text": "done"}
    assert node.total_tokens == 1200
    assert node.cost_usd == 0.25


def test_with_fail_the_node_row_fails_with_the_reason() -> None:
    h = one_agent(limits(1000))
    h.turns("write", 300)
    f = fold(h)
    node = f.nodes[("run-1", "write")]
    assert node.status == "FAILED"
    assert node.error is not None and node.error.startswith("budget exceeded: 900 of 1000 tokens")
    assert ("run-1", "write") not in f.approvals
    assert f.runs["run-1"].status == "FAILED"


def test_a_rejected_raise_fails_the_node_row() -> None:
    h = one_agent(limits(1000, on_exceed="wait"))
    h.turns("write", 300)
    h.feed(approval_submitted("run-1", "write", "rejected", by="bob"))
    f = fold(h)
    assert f.approvals[("run-1", "write")].status == "REJECTED"
    node = f.nodes[("run-1", "write")]
    assert node.status == "FAILED"
    assert node.error is not None and node.error.endswith("rejected by bob")


def test_graphql_shows_the_rows_spend_budget_and_approval_kind() -> None:
    h = one_agent(limits(1000, on_exceed="wait"))
    h.turns("write", 300)
    f = fold(h)
    run = Run.of(dataclasses.asdict(f.runs["run-1"]))
    budget = run.budget()
    assert budget is not None
    assert (budget.tokens, budget.usd, budget.on_exceed) == (1000, None, "wait")
    nodes = [Node.of(dataclasses.asdict(row)) for row in f.nodes_of("run-1")]
    assert Spend.of(nodes) == Spend(tokens=900, usd=0.0)
    approval = Approval.of(dataclasses.asdict(f.approvals[("run-1", "write")]))
    assert (approval.kind, approval.status) == ("BUDGET", "WAITING")
    assert approval.reason is not None and approval.reason.startswith("budget exceeded")
    no_budget = Run.of({**dataclasses.asdict(f.runs["run-1"]), "budget": None})
    assert no_budget.budget() is None
