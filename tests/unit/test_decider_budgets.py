"""Agent budgets in the decider: model calls folded into the run's spend, each next call
granted or refused against the budget, a refused node failed or left waiting, a raise
approved (a new attempt) or rejected."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from run_model import NodeStatus, RunStatus, step
from run_model.budgets import exceeded_reason, next_turn, raise_refusal, run_spend, usd
from run_model.testing import (
    EPOCH,
    approval_requested,
    approval_submitted,
    build_ir,
    cancel_requested,
    model_called,
    patch_submitted,
    run_submitted,
    started,
    succeeded,
    turn_requested,
)
from run_model.timers import pending_timers
from schemas.budgets import AgentRunLimits, Budget, BudgetRaise
from schemas.envelope import Event
from schemas.events import (
    ApprovalDecided,
    ApprovalRefused,
    BudgetExceeded,
    BudgetRaised,
    NodeFailed,
    NodeScheduled,
    PatchRejected,
    RunFailed,
    Spend,
    TurnGranted,
)
from schemas.tasks import NodeTask
from tests.unit.test_decider import Harness, types


def limits(
    tokens: int | None = 1000,
    on_exceed: str = "fail",
    usd_: float | None = None,
    allowed: tuple[str, ...] | None = None,
) -> AgentRunLimits:
    return AgentRunLimits(
        budget=Budget(tokens=tokens, usd=usd_, on_exceed=on_exceed),  # type: ignore[arg-type]
        max_tokens=4096,
        allowed_models=allowed,
    )


class Agents(Harness):
    """A harness whose run is submitted with agent limits, and whose agents ask before each
    model call as the agent worker does."""

    def __init__(self, ir: Any, agent_limits: AgentRunLimits | None) -> None:
        self.state = None
        self.log: list[Event] = []
        self.open_tasks: dict[str, NodeTask] = {}
        self.all_tasks: list[NodeTask] = []
        self.feed(run_submitted("run-1", ir, agent_limits=agent_limits))

    def start(self, node_id: str) -> NodeTask:
        task = self.open_tasks[node_id]
        self.feed(started(task))
        return task

    def ask(self, node_id: str, turn: int) -> list[Event]:
        return self.feed(turn_requested(self.open_tasks[node_id], turn))

    def call(self, node_id: str, turn: int, tokens: int, cost: float | None = None) -> None:
        self.feed(model_called(self.open_tasks[node_id], turn, tokens, cost))

    def turns(self, node_id: str, tokens: int, *, first: int = 1) -> list[Event]:
        """Ask and call, ``tokens`` a call, until a request is refused; its answer."""
        turn = first
        while True:
            answer = self.ask(node_id, turn)
            if not answer or not isinstance(answer[0], TurnGranted):
                return answer
            self.call(node_id, turn, tokens)
            turn += 1


def one_agent(agent_limits: AgentRunLimits | None) -> Agents:
    h = Agents(build_ir({"write": "agent", "after": "noop"}, [("write", "after")]), agent_limits)
    h.start("write")
    return h


# --- the fold ---------------------------------------------------------------------------


def test_model_calls_fold_into_the_run_spend_once_per_turn() -> None:
    h = one_agent(limits())
    task = h.task("write")
    h.feed(model_called(task, 1, 300, 0.01))
    h.feed(model_called(task, 2, 500, 0.02))
    again = model_called(task, 2, 500, 0.02).model_copy(update={"event_id": "another-copy"})
    h.feed(again)  # a second report of turn 2 (another id): the first one counts
    assert run_spend(h.run) == Spend(tokens=800, usd=0.03)
    assert next_turn(h.run.nodes["write"]) == Spend(tokens=500, usd=0.02)


def test_a_call_reported_after_its_node_finished_still_counts() -> None:
    h = one_agent(limits(tokens=None, usd_=5))
    task = h.open_tasks.pop("write")
    h.feed(model_called(task, 1, 100))
    h.feed(succeeded(task, {"text": "done"}))
    h.feed(model_called(task, 2, 40))  # a late copy's call: made, and paid for
    assert run_spend(h.run).tokens == 140


def test_agent_tasks_carry_the_runs_agent_limits_and_other_tasks_do_not() -> None:
    h = Agents(build_ir({"fetch": "noop", "write": "agent"}, [("fetch", "write")]), limits())
    assert h.task("fetch").agent_limits is None
    h.succeed("fetch")
    assert h.task("write").agent_limits == limits()


# --- granted or exceeded ----------------------------------------------------------------


def test_a_budget_of_1000_tokens_stops_a_300_token_agent_before_its_fourth_turn() -> None:
    h = one_agent(limits(1000))
    answer = h.turns("write", 300)
    assert types(answer) == ["BudgetExceeded", "NodeFailed", "RunFailed"]
    exceeded, failed, run_failed = answer
    assert isinstance(exceeded, BudgetExceeded)
    assert exceeded.payload.turn == 4
    assert exceeded.payload.spent == Spend(tokens=900)
    assert exceeded.payload.next_turn == Spend(tokens=300)
    reason = "budget exceeded: 900 of 1000 tokens; the next turn of 'write' would take about "
    assert exceeded.payload.reason == reason + "300 tokens more"
    assert isinstance(failed, NodeFailed)
    assert failed.payload.error == exceeded.payload.reason
    assert failed.payload.retryable is False
    assert isinstance(run_failed, RunFailed)
    assert run_failed.payload.reason.endswith(exceeded.payload.reason)
    granted = [e for e in h.log if isinstance(e, TurnGranted)]
    assert [g.payload.turn for g in granted] == [1, 2, 3]
    assert [g.payload.spent.tokens for g in granted] == [0, 300, 600]
    assert h.status("write") is NodeStatus.FAILED


def test_the_first_call_goes_while_the_run_has_spent_less_than_its_budget() -> None:
    h = one_agent(limits(1000))
    assert types(h.ask("write", 1)) == ["TurnGranted"]
    h.call("write", 1, 1200)  # one call larger than the whole budget
    assert types(h.ask("write", 2))[0] == "BudgetExceeded"
    assert h.run.reason is not None
    assert "budget exceeded: 1200 of 1000 tokens" in h.run.reason
    assert "next turn" not in h.run.reason  # spent already: no call needs foreseeing


def test_without_a_budget_every_call_is_granted() -> None:
    h = one_agent(AgentRunLimits(max_tokens=100))
    for turn in range(1, 6):
        assert types(h.ask("write", turn)) == ["TurnGranted"]
        h.call("write", turn, 10_000)


def test_a_budget_in_dollars_is_checked_on_the_priced_calls() -> None:
    h = one_agent(limits(tokens=None, usd_=0.05))
    assert types(h.ask("write", 1)) == ["TurnGranted"]
    h.call("write", 1, 300, cost=0.02)
    assert types(h.ask("write", 2)) == ["TurnGranted"]
    h.call("write", 2, 300, cost=0.02)
    exceeded = h.ask("write", 3)[0]
    assert isinstance(exceeded, BudgetExceeded)
    assert exceeded.payload.reason == (
        "budget exceeded: $0.04 of $0.05; the next turn of 'write' would take about $0.02 more"
    )


def test_parallel_agents_overshoot_by_at_most_one_call_each() -> None:
    ir = build_ir({"a": "agent", "b": "agent"}, [])
    h = Agents(ir, limits(1000))
    h.start("a")
    h.start("b")
    assert types(h.ask("a", 1)) == ["TurnGranted"]
    assert types(h.ask("b", 1)) == ["TurnGranted"]  # granted against the spend folded so far
    h.call("a", 1, 600)
    h.call("b", 1, 600)
    assert types(h.ask("a", 2))[0] == "BudgetExceeded"
    assert run_spend(h.run).tokens == 1200  # the budget and one call of b's over it
    assert h.run.status is RunStatus.FAILED


def test_a_request_of_an_attempt_that_no_longer_runs_gets_no_answer() -> None:
    h = one_agent(limits())
    task = h.open_tasks["write"]
    h.feed(cancel_requested("run-1"))
    assert h.feed(turn_requested(task, 1)) == []
    stale = task.model_copy(update={"attempt": 7})
    h2 = one_agent(limits())
    assert h2.feed(turn_requested(stale, 1)) == []


def test_the_same_history_gives_the_same_decisions_with_the_same_ids() -> None:
    def history() -> list[Event]:
        h = one_agent(limits(1000, on_exceed="wait"))
        h.turns("write", 300)
        h.feed(approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=2000)))
        return h.log

    first, second = history(), history()
    assert [e.event_id for e in first] == [e.event_id for e in second]
    # Fed again, in the same order, to a fresh state: nothing new is decided.
    state = None
    decided = []
    for ev in first:
        state, decision = step(state, ev, EPOCH)
        decided.extend(decision.events)
    assert {e.event_id for e in decided} <= {e.event_id for e in first}


# --- waiting for a raise ----------------------------------------------------------------


def waiting_on_budget() -> Agents:
    h = one_agent(limits(1000, on_exceed="wait"))
    answer = h.turns("write", 300)
    assert types(answer) == ["BudgetExceeded"]
    return h


def test_with_wait_the_node_waits_for_a_raise_and_nothing_times_it_out() -> None:
    h = waiting_on_budget()
    assert h.status("write") is NodeStatus.WAITING
    assert h.run.status is RunStatus.WAITING
    approval = h.run.nodes["write"].approval
    assert approval is not None
    assert (approval.kind, approval.attempt) == ("budget", 1)
    assert approval.reason is not None
    assert approval.reason.startswith("budget exceeded: 900 of 1000 tokens")
    assert pending_timers(h.run, grace_s=5) == []


def test_a_raise_lets_the_node_run_again_in_a_new_attempt_and_finish() -> None:
    h = waiting_on_budget()
    decided = h.feed(
        approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=2000))
    )
    assert types(decided) == ["ApprovalDecided", "BudgetRaised", "NodeScheduled"]
    raised = decided[1]
    assert isinstance(raised, BudgetRaised)
    assert raised.payload.budget == Budget(tokens=2000, on_exceed="wait")
    assert raised.payload.previous == Budget(tokens=1000, on_exceed="wait")
    assert raised.payload.decided_by == "alice"
    scheduled = decided[2]
    assert isinstance(scheduled, NodeScheduled)
    assert scheduled.payload.attempt == 2
    task = h.task("write")
    assert task.attempt == 2
    assert task.agent_limits is not None
    assert task.agent_limits.budget == Budget(tokens=2000, on_exceed="wait")
    assert h.status("write") is NodeStatus.SCHEDULED
    approval = h.run.nodes["write"].approval
    assert approval is not None and approval.decision == "approved"

    h.start("write")
    assert types(h.ask("write", 1)) == ["TurnGranted"]  # 900 spent + about 300 <= 2000
    h.call("write", 1, 300)
    h.succeed("write", {"text": "done"})
    done = h.succeed("after")
    assert types(done) == ["RunCompleted"]
    assert run_spend(h.run).tokens == 1200


def test_a_rejected_raise_fails_the_node_with_the_reason_it_waited() -> None:
    h = waiting_on_budget()
    decided = h.feed(approval_submitted("run-1", "write", "rejected", by="bob"))
    assert types(decided) == ["ApprovalDecided", "NodeFailed", "RunFailed"]
    failed = decided[1]
    assert isinstance(failed, NodeFailed)
    assert failed.payload.error.startswith("budget exceeded: 900 of 1000 tokens")
    assert failed.payload.error.endswith("; raising the budget was rejected by bob")
    assert h.run.status is RunStatus.FAILED


def refused(h: Agents, **kw: Any) -> str:
    budget = kw.pop("budget", None)
    answer = h.feed(approval_submitted("run-1", "write", "approved", budget=budget, **kw))
    assert types(answer) == ["ApprovalRefused"]
    r = answer[0]
    assert isinstance(r, ApprovalRefused)
    assert h.status("write") is NodeStatus.WAITING
    return r.payload.reason


def test_an_approval_without_a_raise_or_with_too_small_a_one_is_refused() -> None:
    h = waiting_on_budget()
    assert "approve it with a `budget` that raises it" in refused(h, tag="1")
    assert refused(h, tag="2", budget=BudgetRaise(tokens=1000)) == (
        "a raise must be higher than the budget's bound in tokens (1000)"
    )
    assert refused(h, tag="3", budget=BudgetRaise(usd=5)) == (
        "the run's budget has no bound in usd: a raise may only raise the bounds it has"
    )
    reason = refused(h, tag="4", budget=BudgetRaise(tokens=1100))
    assert reason.startswith("the raised budget would still not let node 'write' go on")
    assert reason.endswith("raise it to at least 1200 tokens")
    # The refusals changed nothing: a raise that is enough is still taken.
    enough = BudgetRaise(tokens=1200)
    ok = h.feed(approval_submitted("run-1", "write", "approved", tag="5", budget=enough))
    assert types(ok) == ["ApprovalDecided", "BudgetRaised", "NodeScheduled"]


def test_a_second_decision_on_a_raised_budget_is_refused() -> None:
    h = waiting_on_budget()
    h.feed(approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=3000)))
    answer = h.feed(
        approval_submitted("run-1", "write", "approved", tag="2", budget=BudgetRaise(tokens=9000))
    )
    assert types(answer) == ["ApprovalRefused"]
    assert answer[0].payload.reason == "node 'write' was decided already: approved by alice"


def test_waiting_again_after_a_raise_asks_again_for_the_new_attempt() -> None:
    h = waiting_on_budget()
    h.feed(approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=1500)))
    h.start("write")
    answer = h.turns("write", 300)  # two more calls (1200, 1500): then the bound is reached
    assert types(answer) == ["BudgetExceeded"]
    approval = h.run.nodes["write"].approval
    assert approval is not None
    assert (approval.attempt, approval.decision) == (2, None)
    assert approval.reason is not None and "1500 of 1500 tokens" in approval.reason


def test_a_budget_is_not_given_to_a_hitl_decision_nor_taken_from_a_working_agent() -> None:
    ir = build_ir({"review": "hitl", "write": "agent"}, [])
    h = Agents(ir, limits())
    h.feed(approval_requested(h.open_tasks["review"]))
    answer = h.feed(
        approval_submitted("run-1", "review", "approved", budget=BudgetRaise(tokens=5000))
    )
    assert answer[0].payload.reason == (
        "node 'review' waits for a decision, not on the run's budget: a budget is given only "
        "to approve a node that waits on it"
    )
    answer = h.feed(approval_submitted("run-1", "write", "approved", tag="2"))
    assert answer[0].payload.reason.startswith(
        "node 'write' is an agent node that does not wait on the run's budget"
    )


def test_cancelling_a_run_that_waits_on_its_budget_skips_the_node() -> None:
    h = waiting_on_budget()
    decided = h.feed(cancel_requested("run-1"))
    assert types(decided) == ["NodeSkipped", "NodeSkipped", "RunCancelled"]
    assert h.run.status is RunStatus.CANCELLED


def test_approving_a_raise_is_a_decision_event_the_approval_records() -> None:
    h = waiting_on_budget()
    decided = h.feed(
        approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=2000))
    )
    d = decided[0]
    assert isinstance(d, ApprovalDecided)
    assert (d.payload.node_id, d.payload.attempt, d.payload.decision) == ("write", 1, "approved")


# --- patches ------------------------------------------------------------------------------


def test_a_patch_may_not_move_the_budget_nor_bring_in_a_model_not_allowed() -> None:
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    h = Agents(ir, limits(allowed=("gpt-4o-mini",)))
    ops = [
        {"op": "add", "path": "/budget", "value": {"tokens": 10**6}},
        {
            "op": "add",
            "path": "/nodes/-",
            "value": {"id": "w", "type": "agent", "config": {"prompt": "p", "model": "o3"}},
        },
        {"op": "add", "path": "/edges/-", "value": {"from": "a", "to": "w"}},
    ]
    answer = h.feed(patch_submitted("run-1", ops))
    assert types(answer) == ["PatchRejected"]
    rejected = answer[0]
    assert isinstance(rejected, PatchRejected)
    assert rejected.payload.reasons == [
        "the run's budget cannot be changed by a patch: a person raises it by approving the "
        "agent node that waits on it",
        "node 'w' names model 'o3', which the tenant does not allow (allowed: gpt-4o-mini)",
    ]
    allowed = [*ops[1:]]
    allowed[0] = {**ops[1], "value": {**ops[1]["value"], "config": {"prompt": "p"}}}  # type: ignore[dict-item]
    assert types(h.feed(patch_submitted("run-1", allowed, tag="2"))) == ["PatchApplied"]


# --- the words ----------------------------------------------------------------------------


def test_reasons_name_each_bound_passed() -> None:
    budget = Budget(tokens=1000, usd=0.5)
    both = exceeded_reason("w", budget, Spend(tokens=1000, usd=0.6), Spend(tokens=10, usd=0.1))
    assert both == "budget exceeded: 1000 of 1000 tokens, $0.6 of $0.5"
    assert usd(0.00009) == "$0.00009" and usd(2) == "$2" and usd(0) == "$0"
    assert raise_refusal("w", budget, BudgetRaise(usd=0.7), Spend(usd=0.6), Spend(usd=0.2)) == (
        "the raised budget would still not let node 'w' go on (budget exceeded: $0.6 of $0.7; "
        "the next turn of 'w' would take about $0.2 more): raise it to at least $0.8"
    )


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    budget=st.integers(1, 5000),
    sizes=st.lists(st.integers(0, 2000), min_size=1, max_size=12),
)
def test_one_agent_passes_its_budget_only_by_a_call_larger_than_foreseen(
    budget: int, sizes: list[int]
) -> None:
    h = one_agent(limits(budget))
    largest = 0
    for turn, size in enumerate(sizes, start=1):
        before = run_spend(h.run).tokens
        answer = h.ask("write", turn)
        granted = bool(answer) and isinstance(answer[0], TurnGranted)
        # Granted exactly when the spend and the largest call so far fit.
        assert granted == (before < budget and before + largest <= budget)
        if not granted:
            assert h.run.status is RunStatus.FAILED
            break
        h.call("write", turn, size)
        assert run_spend(h.run).tokens <= budget + max(size - largest, 0)
        largest = max(largest, size)


@settings(max_examples=200, deadline=None)
@given(
    budget=st.integers(1, 5000),
    steps=st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 2000)), max_size=30),
)
def test_parallel_agents_pass_the_budget_by_at_most_one_call_each(
    budget: int, steps: list[tuple[str, int]]
) -> None:
    """Two agents ask and call in any interleaving, a call at most as large as the largest
    before it (so that the foresight holds); together they pass the budget by at most one
    call each."""
    h = Agents(build_ir({"a": "agent", "b": "agent"}, []), limits(budget, on_exceed="wait"))
    h.start("a")
    h.start("b")
    turn = {"a": 1, "b": 1}
    granted: dict[str, int | None] = {"a": None, "b": None}  # a turn granted, not yet called
    largest = {"a": 0, "b": 0}
    first = {"a": 0, "b": 0}
    for node_id, size in steps:
        if h.status(node_id) is not NodeStatus.RUNNING:
            continue
        if granted[node_id] is None:
            answer = h.ask(node_id, turn[node_id])
            if answer and isinstance(answer[0], TurnGranted):
                granted[node_id] = turn[node_id]
            continue
        call = size if largest[node_id] == 0 else min(size, largest[node_id])
        if largest[node_id] == 0:
            first[node_id] = call
        h.call(node_id, turn[node_id], call)
        largest[node_id] = max(largest[node_id], call)
        granted[node_id] = None
        turn[node_id] += 1
    spent = run_spend(h.run).tokens
    # A first call is foreseen as free: it may pass by its whole size.
    assert spent <= budget + sum(max(largest[n], first[n]) for n in "ab")
