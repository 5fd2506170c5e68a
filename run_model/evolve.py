"""``evolve(state, event) -> state``: fold one event into a run's state.

Pure and idempotent. The input state is never mutated (copy on write of what changes), so a
caller may keep the state it had before. An event already folded in (same event id), an event
of a finished run, or one naming a node the run does not have, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from run_model.agent_policy import agent_proposer
from run_model.budgets import call_spend
from run_model.forking import fork_state
from run_model.mapping import retry_policy
from run_model.state import (
    NODE_IN_FLIGHT,
    Approval,
    ChildRun,
    EventWait,
    NodeState,
    NodeStatus,
    RunState,
    RunStatus,
)
from schemas.agent_tools import ToolCallRecord
from schemas.budgets import AgentRunLimits
from schemas.envelope import Event
from schemas.events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetExceeded,
    BudgetRaised,
    EventAwaited,
    MapStarted,
    ModelCalled,
    ModelCalledPayload,
    NodeFailed,
    NodeProgress,
    NodeQueued,
    NodeRetryPlanned,
    NodeScheduled,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    PatchApplied,
    PatchAppliedPayload,
    PatchRejected,
    PatchSubmitted,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunForked,
    RunStarted,
    RunSubmitted,
    SubworkflowStarted,
    ToolCalled,
    ToolCalledPayload,
)

# Events that tell about a run without changing what the coordinator knows of it: a worker's
# note that an attempt waits for a limit, a node's report of its progress. They are not even
# recorded as applied: the state is returned as it was, so the coordinator neither copies nor
# stores it again (a flood of waiting tasks, or a chatty node, would otherwise rewrite as many
# states and hold up every other run behind it in the partition).
NO_EFFECT: tuple[type[Event], ...] = (NodeQueued, NodeProgress)


def failed_for_good(
    state: RunState, node_id: str, attempt: int, retryable: bool, item: int | None = None
) -> bool:
    """Whether a failure of ``attempt`` ends the node, or the map node's ``item`` (no
    attempt left, or not worth one)."""
    return not retryable or attempt >= retry_policy(state, node_id, item).max_attempts


def evolve(state: RunState | None, event: Event) -> RunState | None:
    """The state after ``event``. ``None`` stays ``None`` until the run's RunSubmitted (or
    RunForked: the source's history folded here, then re-addressed to the fork)."""
    if state is None:
        if isinstance(event, RunForked):
            return fork_state(fold(None, event.payload.history_events()), event)
        return _submitted(event) if isinstance(event, RunSubmitted) else None
    if event.event_id in state.applied or state.finished or isinstance(event, NO_EFFECT):
        return state
    new = state.model_copy(update={"applied": state.applied | {event.event_id}})
    _apply(new, event)
    new.refresh_status()
    return new


def fold(state: RunState | None, events: Iterable[Event]) -> RunState | None:
    for ev in events:
        state = evolve(state, ev)
    return state


def _submitted(event: RunSubmitted) -> RunState:
    p = event.payload
    return RunState(
        run_id=event.aggregate_id,
        tenant=event.actor.tenant,
        workflow_id=p.workflow_id,
        version=p.version,
        ir=p.ir,
        definition=p.definition,
        input=p.input,
        nodes={node_id: NodeState() for node_id in p.ir.nodes},
        applied={event.event_id},
        agent_limits=p.agent_limits,
        parent=p.parent,
        depth=p.depth,
        subworkflows=p.subworkflows,
    )


def _node(state: RunState, node_id: str) -> NodeState | None:
    """A copy of the node's state, put in place of the old one, for ``_apply`` to change.
    ``None`` for a node that has finished (nothing changes it any more), or that the run's
    workflow does not have (ignored).

    The copy is shallow: ``_apply`` sets a node's fields and never changes a list, dict or
    model it holds in place (it builds a new one: ``{**node.failures, attempt: error}``),
    so the old state keeps its own. A deep copy of every node event's node, its output
    included, was the larger part of the coordinator's time in ``evolve``."""
    old = state.nodes.get(node_id)
    if old is None or old.terminal:
        return None
    copy = old.model_copy() if not old.items else _shallow(old)
    state.nodes = {**state.nodes, node_id: copy}
    return copy


def _shallow(node: NodeState) -> NodeState:
    """A copy of a map node that shares its items (a deep copy of thousands of items for
    every event of one of them would make a map quadratic); only ``_target`` changes an
    item, and it puts a copy in place first."""
    return node.model_copy(update={"items": dict(node.items)})


def _target(state: RunState, node_id: str, item: int | None) -> NodeState | None:
    """What a node event is about: the node (``_node``), or the map node's ``item``, a copy
    put in place. ``None`` for a finished node or item, or an item of a node that is no map.

    A finished item, like a finished node, changes no more: an attempt's NodeStarted may
    reach the log after its outcome (a worker sends it without waiting, and a retried send
    comes later), and folded in it would make a succeeded item running again, while the map
    still counted it done."""
    if item is None:
        return _node(state, node_id)
    old = state.nodes.get(node_id)
    if old is None or old.terminal or old.map_items is None or item >= old.map_items:
        return None
    current = old.items.get(item)
    if current is not None and current.terminal:
        return None
    node = _shallow(old)
    copy = current.model_copy() if current is not None else NodeState()
    node.items[item] = copy
    state.nodes = {**state.nodes, node_id: node}
    return copy


def _started(node: NodeState, attempt: int, at: datetime) -> None:
    """A worker started ``attempt`` at ``at`` (told by its NodeStarted, or by its outcome
    when it was quick). A task redelivered after a crash starts again: the deadline still
    counts from the first start."""
    node.started = sorted({*node.started, attempt})
    node.started_at = {attempt: at, **node.started_at}


ITEM_EVENTS = (NodeScheduled, NodeStarted, NodeSucceeded, NodeFailed, NodeRetryPlanned)


def _apply(state: RunState, event: Event) -> None:
    """Fold ``event`` into ``state``, a fresh shallow copy owned by the caller."""
    item = getattr(event.payload, "item", None)
    if item is None or not isinstance(event, ITEM_EVENTS):
        _apply_one(state, event)
        return
    node_id = event.payload.node_id
    before = state.nodes.get(node_id)
    was_done = before is not None and item in before.items and before.items[item].terminal
    _apply_one(state, event)
    node = state.nodes.get(node_id)
    if node is None or node is before:
        return  # nothing changed
    # The map's counts, kept with its items so that deciding never scans them all.
    if not was_done and node.items[item].terminal:
        node.items_done += 1
        if node.items[item].status is NodeStatus.FAILED:
            node.items_failed = [*node.items_failed, item]
    while node.items_next in node.items:
        node.items_next += 1


def _apply_one(state: RunState, event: Event) -> None:
    if isinstance(event, RunStarted):
        if state.status is RunStatus.PENDING:
            state.status = RunStatus.RUNNING
    elif isinstance(event, MapStarted):
        node = _node(state, event.payload.node_id)
        if node is not None and node.map_items is None:
            node.map_items = event.payload.items
            node.scheduled = [1]
            node.status = NodeStatus.RUNNING
    elif isinstance(event, NodeScheduled):
        node = _target(state, event.payload.node_id, event.payload.item)
        if node is not None:
            node.scheduled = sorted({*node.scheduled, event.payload.attempt})
            if event.payload.attempt == node.attempt:
                node.status = NodeStatus.SCHEDULED
    elif isinstance(event, NodeStarted):
        node = _target(state, event.payload.node_id, event.payload.item)
        if node is not None:
            _started(node, event.payload.attempt, event.occurred_at)
            # A hitl task run again after its request was made must not undo the wait.
            if event.payload.attempt == node.attempt and node.status is not NodeStatus.WAITING:
                node.status = NodeStatus.RUNNING
    elif isinstance(event, NodeSucceeded):
        node = _target(state, event.payload.node_id, event.payload.item)
        # The first success wins, whichever attempt it came from; a success after the node
        # failed for good is too late (the run has failed already).
        if node is not None:
            p = event.payload
            if p.started_at is not None:  # the start, told (for a quick attempt, only) here
                _started(node, p.attempt, p.started_at)
            node.status = NodeStatus.SUCCEEDED
            node.succeeded_attempt = p.attempt
            node.output = p.output if p.output_inline else None
            node.output_inline = p.output_inline
            node.output_ref = p.output_ref
            node.outcome = p.outcome
    elif isinstance(event, EventAwaited):
        w = event.payload
        node = _node(state, w.node_id)
        # The latest attempt's wait, once, while it is in flight (a redelivered task waits
        # again under the same id, and changes nothing).
        if node is not None and w.attempt == node.attempt and node.status in NODE_IN_FLIGHT:
            node.status = NodeStatus.WAITING
            node.awaiting = EventWait(attempt=w.attempt, name=w.name, key=w.key, due_at=w.due_at)
    elif isinstance(event, SubworkflowStarted):
        s = event.payload
        node = _node(state, s.node_id)
        # As a wait_event's wait: the latest attempt's start, once, while it is in flight.
        if node is not None and s.attempt == node.attempt and node.status in NODE_IN_FLIGHT:
            node.status = NodeStatus.WAITING
            node.child = ChildRun(attempt=s.attempt, run_id=s.child_run_id)
    elif isinstance(event, NodeFailed):
        f = event.payload
        node = _target(state, f.node_id, f.item)
        # The first report of an attempt's failure is the one that counts: a worker's late
        # report of an attempt the coordinator already timed out changes nothing.
        if node is not None and f.attempt not in node.failures:
            if f.started_at is not None:  # the start, told (for a quick attempt, only) here
                _started(node, f.attempt, f.started_at)
            node.failures = {**node.failures, f.attempt: f.error}
            # Only the latest attempt's failure counts: an older attempt's report is stale.
            if f.attempt >= node.attempt and failed_for_good(
                state, f.node_id, f.attempt, f.retryable, f.item
            ):
                node.status = NodeStatus.FAILED
                node.error = f.error
    elif isinstance(event, NodeRetryPlanned):
        r = event.payload
        node = _target(state, r.node_id, r.item)
        if node is not None and r.attempt not in node.retry_due:
            node.retry_due = {**node.retry_due, r.attempt: r.due_at}
    elif isinstance(event, ApprovalRequested):
        a = event.payload
        node = _node(state, a.node_id)
        # The request of the latest attempt, once: a redelivered task asks again (same id,
        # or a later copy) and changes nothing.
        if (
            node is not None
            and a.attempt == node.attempt
            and (node.approval is None or node.approval.attempt != a.attempt)
        ):
            node.status = NodeStatus.WAITING
            node.approval = Approval(
                attempt=a.attempt, due_at=a.due_at, default_outcome=a.default_outcome
            )
    elif isinstance(event, ApprovalDecided):
        d = event.payload
        node = _node(state, d.node_id)
        if node is not None and node.approval is not None:
            node.approval = node.approval.model_copy(
                update={"decision": d.decision, "decided_by": d.decided_by}
            )
            if node.approval.kind == "budget":
                return  # the node runs again (BudgetRaised) or fails (NodeFailed) next
            node.status = NodeStatus.SUCCEEDED
            node.succeeded_attempt = d.attempt
            # Tiny and always inline: edge guards read ``decision`` (run_model.edges).
            node.output = d.node_output()
            node.output_inline = True
            node.output_ref = None
    elif isinstance(event, ModelCalled):
        _called(state, event.payload)
    elif isinstance(event, ToolCalled):
        _tool_called(state, event.payload)
    elif isinstance(event, BudgetExceeded):
        b = event.payload
        node = _node(state, b.node_id)
        # With `fail`, the NodeFailed decided with it ends the node; with `wait`, a person is
        # asked to raise the budget, as a hitl node asks for a decision.
        if (
            node is not None
            and b.attempt == node.attempt
            and b.budget.on_exceed == "wait"
            and node.status in NODE_IN_FLIGHT
        ):
            node.status = NodeStatus.WAITING
            node.approval = Approval(attempt=b.attempt, kind="budget", reason=b.reason)
    elif isinstance(event, BudgetRaised):
        limits = state.agent_limits or AgentRunLimits()
        state.agent_limits = limits.model_copy(update={"budget": event.payload.budget})
    elif isinstance(event, NodeSkipped):
        node = _node(state, event.payload.node_id)
        if node is not None:
            node.status = NodeStatus.SKIPPED
            node.skip_reason = event.payload.reason
    elif isinstance(event, PatchSubmitted):
        proposer = agent_proposer(event)
        if proposer is not None:
            state.proposals = {**state.proposals, event.event_id: proposer}
    elif isinstance(event, PatchApplied):
        _patched(state, event.payload)
    elif isinstance(event, PatchRejected):
        state.proposals = _without(state.proposals, [event.payload.patch_id])
    elif isinstance(event, RunCancelRequested):
        state.cancel_requested = True
    elif isinstance(event, RunCompleted):
        state.status = RunStatus.COMPLETED
    elif isinstance(event, RunFailed):
        state.status = RunStatus.FAILED
        state.reason = event.payload.reason
    elif isinstance(event, RunCancelled):
        state.status = RunStatus.CANCELLED
        state.reason = event.payload.reason
    # RunSubmitted or RunForked again (another id for the same run), RunWarning, TimerFired
    # (a wake-up; the decider reads it), ApprovalSubmitted and TurnRequested (judged by the
    # decider), ApprovalRefused, TurnGranted and event types this coordinator does not route
    # on are recorded as applied and change nothing else.


def _called(state: RunState, called: ModelCalledPayload) -> None:
    """Record what a model call spent, once per (attempt, turn): the first report counts.
    A call of a node that has finished counts too (a late report of a timed-out attempt):
    it was made, and paid for."""
    old = state.nodes.get(called.node_id)
    if old is None:
        return
    turns = old.calls.get(called.attempt, {})
    if called.turn in turns:
        return
    calls = {**old.calls, called.attempt: {**turns, called.turn: call_spend(called)}}
    state.nodes = {**state.nodes, called.node_id: old.model_copy(update={"calls": calls})}


def _tool_called(state: RunState, called: ToolCalledPayload) -> None:
    """Record a finished tool call under its id: the first report counts, except that a
    success replaces a failure (a later attempt made the same call again, and it answered).
    Like a model call, a call of a node that has finished counts too: it was made."""
    old = state.nodes.get(called.node_id)
    if old is None:
        return
    known = old.tool_calls.get(called.call_id)
    if known is not None and (known.ok or not called.ok):
        return
    record = ToolCallRecord(
        call_id=called.call_id,
        tool=called.tool,
        attempt=called.attempt,
        ok=called.ok,
        result=called.result,
        result_ref=called.result_ref,
        error=called.error,
    )
    calls = {**old.tool_calls, called.call_id: record}
    state.nodes = {**state.nodes, called.node_id: old.model_copy(update={"tool_calls": calls})}


def _patched(state: RunState, p: PatchAppliedPayload) -> None:
    """The run moves to the patch's version: nodes added start PENDING, nodes removed (only
    ever ones not yet scheduled) are gone, and the others keep every fact about them."""
    if p.from_version != state.version or p.patch_id in state.patches:
        return  # not a successor of this version (cannot come from our decider)
    state.nodes = {node_id: state.nodes.get(node_id, NodeState()) for node_id in p.ir.nodes}
    state.ir = p.ir
    state.definition = p.definition
    state.version = p.to_version
    state.patches = [*state.patches, p.patch_id]
    state.agent_spawns = [
        *state.agent_spawns,
        *(n for n in p.agent_spawns if n not in state.agent_spawns),
    ]
    # Who wrote each node: the agent that proposed this patch for what it added or changed,
    # nobody's (a person's) if a person did; a removed node is nobody's any more.
    proposer = state.proposals.get(p.patch_id)
    written = [*p.added_nodes, *p.changed_nodes]
    authored = _without(state.authored_by, [*p.removed_nodes, *written])
    if proposer is not None:
        authored.update(dict.fromkeys(written, proposer))
    state.authored_by = authored
    state.proposals = _without(state.proposals, [p.patch_id])


def _without(mapping: dict[str, str], keys: Iterable[str]) -> dict[str, str]:
    gone = set(keys)
    return {k: v for k, v in mapping.items() if k not in gone}
