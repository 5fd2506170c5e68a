"""A run's budget against what its agents spend: the coordinator's side of agent budgets.

An agent's turns run in a loop inside the worker, so the coordinator cannot stop one between
two calls by itself; instead the worker asks before each model call (TurnRequested) and the
coordinator answers from the run's facts, in log order, with the same answer on every replay:
the call may go (TurnGranted), or it would pass the budget (BudgetExceeded). What the run has
spent is the sum of the ModelCalled events folded so far, every node and attempt counted.

What a call will cost is not known before it is made, so the next turn of a node is foreseen
as its largest call so far (any attempt), tokens and dollars each. A conversation grows by one
call's answer at each turn, so the last call is usually the largest and a good guess for the
next; ``max_tokens`` would be a poor one, since it bounds only the completion (the prompt
comes on top) and is a ceiling far above what most calls use: with it a 1,000-token budget
would refuse every turn of a node allowed 4,096. A node's first call is foreseen as free: it
goes while the run has spent less than its budget.

Bounds of the overshoot: a node stops before the call that would pass the budget, as far as
its largest call foresees it; a call larger than foreseen passes by the difference. Agent
nodes running in parallel are each granted their next call against the spend folded so far,
which does not yet hold the calls the others were granted and are making: together they may
pass the budget by at most one call each.
"""

from __future__ import annotations

from run_model.state import NODE_IN_FLIGHT, NodeState, RunState
from schemas.budgets import Budget, BudgetRaise
from schemas.events import (
    ApprovalSubmitted,
    BudgetExceededPayload,
    BudgetRaisedPayload,
    ModelCalledPayload,
    Spend,
    TurnGrantedPayload,
    TurnRequestedPayload,
)

NOTHING = Spend()


def call_spend(called: ModelCalledPayload) -> Spend:
    """What one model call spent. A provider that leaves the total out still counted the
    prompt and the completion."""
    u = called.usage
    return Spend(
        tokens=max(u.total_tokens, u.prompt_tokens + u.completion_tokens),
        usd=called.cost_usd or 0.0,
    )


def add(a: Spend, b: Spend) -> Spend:
    return Spend(
        tokens=a.tokens + b.tokens, usd=a.usd + b.usd, tool_calls=a.tool_calls + b.tool_calls
    )


def node_spend(node: NodeState) -> Spend:
    """The node's model calls (tokens, dollars) and its tool calls (each distinct call once,
    however many attempts it took to answer)."""
    total = Spend(tool_calls=len(node.tool_calls))
    for turns in node.calls.values():
        for spent in turns.values():
            total = add(total, spent)
    return total


def run_spend(state: RunState) -> Spend:
    """Every model and tool call of the run folded so far, all nodes and attempts. Tool
    calls are counted, not bounded: a budget is in tokens and dollars."""
    total = NOTHING
    for node in state.nodes.values():
        total = add(total, node_spend(node))
    return total


def next_turn(node: NodeState) -> Spend:
    """The node's next call, foreseen as its largest so far (the module doc says why)."""
    calls = [spent for turns in node.calls.values() for spent in turns.values()]
    return Spend(
        tokens=max((c.tokens for c in calls), default=0),
        usd=max((c.usd for c in calls), default=0.0),
    )


def usd(amount: float) -> str:
    """Dollars as people read them: ``$0.00009``, ``$1.5``, ``$2``."""
    return "$" + (f"{amount:.6f}".rstrip("0").rstrip(".") or "0")


def _passes(spent: float, upcoming: float, bound: float | None) -> bool:
    return bound is not None and (spent >= bound or spent + upcoming > bound)


def fits(budget: Budget, spent: Spend, upcoming: Spend) -> bool:
    """Whether a call foreseen as ``upcoming`` fits, after ``spent``."""
    return not (
        _passes(spent.tokens, upcoming.tokens, budget.tokens)
        or _passes(spent.usd, upcoming.usd, budget.usd)
    )


def exceeded_reason(node_id: str, budget: Budget, spent: Spend, upcoming: Spend) -> str:
    """``budget exceeded: 900 of 1000 tokens; the next turn of 'write' would take about 300
    more``: each bound passed, what was spent of it, and the foreseen call that passes it."""
    spent_parts, upcoming_parts = [], []
    if _passes(spent.tokens, upcoming.tokens, budget.tokens):
        spent_parts.append(f"{spent.tokens} of {budget.tokens} tokens")
        upcoming_parts.append(f"{upcoming.tokens} tokens")
    if budget.usd is not None and _passes(spent.usd, upcoming.usd, budget.usd):
        spent_parts.append(f"{usd(spent.usd)} of {usd(budget.usd)}")
        upcoming_parts.append(usd(upcoming.usd))
    reason = "budget exceeded: " + ", ".join(spent_parts)
    if fits(budget, spent, NOTHING):  # only the next call would pass it
        reason += f"; the next turn of {node_id!r} would take about {', '.join(upcoming_parts)}"
        reason += " more"
    return reason


def raised(budget: Budget, given: BudgetRaise) -> Budget:
    """``budget`` with the bounds ``given`` names replaced (``on_exceed`` stays)."""
    return budget.model_copy(
        update={
            "tokens": given.tokens if given.tokens is not None else budget.tokens,
            "usd": given.usd if given.usd is not None else budget.usd,
        }
    )


def raise_refusal(
    node_id: str, budget: Budget, given: BudgetRaise, spent: Spend, upcoming: Spend
) -> str | None:
    """Why ``given`` cannot raise ``budget`` so that ``node_id`` goes on, or None if it can:
    each bound it names must be one the budget has, and higher; and the node's next call, as
    foreseen, must then fit."""
    refusal = _bound_refusal("tokens", given.tokens, budget.tokens, str(budget.tokens))
    if refusal is None:
        shown = usd(budget.usd) if budget.usd is not None else ""
        refusal = _bound_refusal("usd", given.usd, budget.usd, shown)
    if refusal is not None:
        return refusal
    after = raised(budget, given)
    if fits(after, spent, upcoming):
        return None
    needs = []
    if after.tokens is not None and _passes(spent.tokens, upcoming.tokens, after.tokens):
        needs.append(f"{max(spent.tokens + upcoming.tokens, spent.tokens + 1)} tokens")
    if after.usd is not None and _passes(spent.usd, upcoming.usd, after.usd):
        needs.append(usd(spent.usd + upcoming.usd))
    return (
        f"the raised budget would still not let node {node_id!r} go on "
        f"({exceeded_reason(node_id, after, spent, upcoming)}): raise it to at least "
        f"{' and '.join(needs)}"
    )


def _bound_refusal(name: str, new: float | None, old: float | None, shown: str) -> str | None:
    if new is None:
        return None
    if old is None:
        return f"the run's budget has no bound in {name}: a raise may only raise the bounds it has"
    if new <= old:
        return f"a raise must be higher than the budget's bound in {name} ({shown})"
    return None


def answer_turn(
    state: RunState, request: TurnRequestedPayload
) -> TurnGrantedPayload | BudgetExceededPayload | None:
    """The answer to an agent's request for its next model call: granted if the run's spend
    and the call, as foreseen, fit in the budget (always, without one); else the budget is
    exceeded. None for a request of an attempt that no longer runs (a newer one, a node that
    has finished or waits, a run being cancelled): its worker sees its node move on."""
    node = state.nodes.get(request.node_id)
    if (
        node is None
        or state.cancel_requested
        or request.attempt != node.attempt
        or node.status not in NODE_IN_FLIGHT
    ):
        return None
    spent = run_spend(state)
    budget = state.budget
    upcoming = next_turn(node)
    if budget is None or fits(budget, spent, upcoming):
        return TurnGrantedPayload(
            node_id=request.node_id, attempt=request.attempt, turn=request.turn, spent=spent
        )
    return BudgetExceededPayload(
        node_id=request.node_id,
        attempt=request.attempt,
        turn=request.turn,
        spent=spent,
        next_turn=upcoming,
        budget=budget,
        reason=exceeded_reason(request.node_id, budget, spent, upcoming),
    )


def judge_raise(state: RunState, submitted: ApprovalSubmitted) -> BudgetRaisedPayload | str:
    """The raise an approval of a node waiting on the run's budget brings (the run's new
    budget), or why it is refused: it brings none, or one that does not let the node's next
    call fit (``raise_refusal``)."""
    p = submitted.payload
    node = state.nodes[p.node_id]
    approval = node.approval
    budget = state.budget
    if approval is None or budget is None or p.budget is None:
        reason = approval.reason if approval is not None else "budget exceeded"
        return (
            f"node {p.node_id!r} waits on the run's budget ({reason}): approve it with a "
            "`budget` that raises it"
        )
    refusal = raise_refusal(p.node_id, budget, p.budget, run_spend(state), next_turn(node))
    if refusal is not None:
        return refusal
    return BudgetRaisedPayload(
        node_id=p.node_id,
        attempt=approval.attempt,
        budget=raised(budget, p.budget),
        previous=budget,
        decided_by=submitted.actor.id,
        submission_id=submitted.event_id,
    )
