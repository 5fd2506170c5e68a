"""``decide``: what the coordinator does about one event, as events and tasks.

Pure: the clock is passed in, and every decision's id is derived from the event that caused
it and the decision itself (``decided``, the one place that does it), so a coordinator that
processes an event again after a crash emits exactly the same records and consumers drop
them as already seen.

Decisions are guarded by facts, never by "this event is new": a node is scheduled only while
it is PENDING, a retry only if that attempt was not scheduled yet, a run finished only once.
The adapter folds every decided event into the state before it reads the next record (see
``step``), so two events that both make one node ready schedule it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from run_model.backoff import retry_delay_s
from run_model.budgets import answer_turn, judge_raise
from run_model.completion import completion
from run_model.decisions import decided, decision_refused, patch_rejected, refuse_after_finish
from run_model.edges import dead_reason, edge_live, predecessors_finished
from run_model.evolve import evolve
from run_model.forking import fork_point_failure
from run_model.limits import COMMENT_MAX_CHARS, capped, json_size
from run_model.mapping import (
    all_finished,
    first_failure,
    item_key,
    map_output,
    next_items,
    output_too_large,
    resolve_over,
    retry_policy,
    spec_of,
    unfinished,
)
from run_model.patching import PatchLimits, Refused, judge
from run_model.state import Approval, NodeStatus, RunState, RunStatus
from run_model.subworkflows import cancel_children, finished_notice, live_children
from schemas.agent_tools import ToolCallRecord, registered_type_names
from schemas.canonical import canonical_json, json_ref
from schemas.codec import encode_event
from schemas.envelope import Event, EventT, Payload
from schemas.events import (
    MAX_EVENT_BYTES,
    ApprovalDecided,
    ApprovalDecidedPayload,
    ApprovalSubmitted,
    BudgetExceeded,
    BudgetExceededPayload,
    BudgetRaised,
    EventReceived,
    MapStarted,
    MapStartedPayload,
    NodeFailed,
    NodeFailedPayload,
    NodeRetryPlanned,
    NodeRetryPlannedPayload,
    NodeScheduled,
    NodeScheduledPayload,
    NodeSkipped,
    NodeSkippedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
    PatchApplied,
    PatchAppliedPayload,
    PatchSubmitted,
    RunCancelled,
    RunCancelledPayload,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunFailedPayload,
    RunForked,
    RunStarted,
    RunStartedPayload,
    RunSubmitted,
    RunWarning,
    RunWarningPayload,
    SubworkflowFinished,
    TimerFired,
    TurnGranted,
    TurnGrantedPayload,
    TurnRequested,
)
from schemas.ir import IRNode
from schemas.map_node import MAP, MapConfig, MapInner
from schemas.subworkflow_node import SUBWORKFLOW, SubworkflowCall
from schemas.tasks import NodeContext, NodeTask
from schemas.topics import TASK_TYPES, task_topic
from schemas.workflow import may_patch
from schemas.workflow_ids import workflow_id_for

DEFAULT_LIMITS = PatchLimits()
_UNREAD: Any = object()  # an item whose value ``_schedule_item`` reads itself
# Made in ``run_model.decisions``, and used from here by the adapter and the tests.
__all__ = [
    "DEFAULT_LIMITS",
    "Decision",
    "decide",
    "decided",
    "refuse_after_finish",
    "step",
]


@dataclass(frozen=True)
class Decision:
    """What to send: ``events`` to the run's stream, ``tasks`` to ``aob.tasks.<type>``, and
    ``elsewhere`` events to the streams of other runs, each keyed by its own run (a child's
    end to its parent, a cancel to a child: ``run_model.subworkflows``)."""

    events: list[Event] = field(default_factory=list)
    tasks: list[NodeTask] = field(default_factory=list)
    elsewhere: list[Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.tasks or self.elsewhere)


def step(
    state: RunState | None,
    event: Event,
    now: datetime,
    limits: PatchLimits = DEFAULT_LIMITS,
) -> tuple[RunState | None, Decision]:
    """Fold ``event`` in, decide, and fold the decisions in too: the adapter's one call.

    The state returned already contains the decided events, so when they come back through
    the log they are recognised (by id) and skipped. A duplicate changes nothing. ``limits``
    bound what a patch may do (``run_model.patching``).
    """
    if state is not None and event.event_id in state.applied:
        return state, Decision()
    if state is not None and state.finished:
        return state, Decision()
    after = evolve(state, event)
    if after is None:
        return None, Decision()
    if after is state:  # an event of no effect (run_model.evolve.NO_EFFECT): nothing to decide
        return state, Decision()
    return _Decider(after, event, now, limits).run()


def decide(
    state: RunState, event: Event, now: datetime, limits: PatchLimits = DEFAULT_LIMITS
) -> Decision:
    """The decision about ``event``, given ``state`` with ``event`` already folded in."""
    return _Decider(state, event, now, limits).run()[1]


class _Decider:
    """One decision: works on a private copy of the state, folding in each event it makes
    so that later checks in the same decision see them (a skip flows on to successors)."""

    def __init__(self, state: RunState, cause: Event, now: datetime, limits: PatchLimits) -> None:
        self.state = state
        self.cause = cause
        self.now = now
        self.limits = limits
        self.events: list[Event] = []
        self.tasks: list[NodeTask] = []
        self.elsewhere: list[Event] = []
        self.rank = {node_id: i for i, node_id in enumerate(state.ir.order)}

    def run(self) -> tuple[RunState, Decision]:
        if not self.state.finished:
            children = live_children(self.state)
            self._react()
            if not self.state.finished:
                self._maybe_complete()
            if self.state.finished:
                self._tell_family(children)
        return self.state, Decision(self.events, self.tasks, self.elsewhere)

    def _tell_family(self, children: dict[str, str]) -> None:
        """The run just finished: its parent hears how, and the children it still waited
        for are cancelled if it did not complete (``run_model.subworkflows``)."""
        notice = finished_notice(self.state, self.cause, self.now)
        if notice is not None:
            self.elsewhere.append(notice)
        if self.state.status is RunStatus.COMPLETED:
            return
        if isinstance(self.cause, SubworkflowFinished):  # that child has finished already
            children.pop(self.cause.payload.node_id, None)
        self.elsewhere += cancel_children(self.state, children, self.cause, self.now)

    # --- reactions ----------------------------------------------------------------------

    def _react(self) -> None:
        ev = self.cause
        if isinstance(ev, RunSubmitted):
            if self.state.status is RunStatus.PENDING:
                self._emit(RunStarted, RunStartedPayload(version=self.state.version), "start")
                self._settle(self.state.ir.roots)
        elif isinstance(ev, RunForked):
            if self.state.status is RunStatus.PENDING:
                self._emit(RunStarted, RunStartedPayload(version=self.state.version), "start")
                self._on_forked()
        elif isinstance(ev, RunCancelRequested):
            reason = ev.payload.reason
            self._cancel(capped(reason) if reason is not None else None)
        elif isinstance(ev, NodeFailed):
            self._on_failed(ev)
        elif isinstance(ev, ApprovalSubmitted):
            self._on_decision(ev)
        elif isinstance(ev, EventReceived):
            self._on_event_received(ev)
        elif isinstance(ev, SubworkflowFinished):
            self._on_child_finished(ev)
        elif isinstance(ev, PatchSubmitted):
            self._on_patch(ev)
        elif isinstance(ev, NodeSucceeded) and ev.payload.item is not None:
            self._advance_map(ev.payload.node_id)
        elif isinstance(ev, NodeSucceeded | NodeSkipped):
            node_id = ev.payload.node_id
            if node_id in self.state.nodes and self.state.nodes[node_id].terminal:
                self._settle([e.node for e in self.state.node_def(node_id).successors])
        elif isinstance(ev, TimerFired):
            self._on_timer(ev)
        elif isinstance(ev, TurnRequested):
            self._on_turn(ev)

    def _on_failed(self, ev: NodeFailed) -> None:
        p = ev.payload
        if p.item is not None:
            self._on_item_failed(ev)
            return
        node = self.state.nodes.get(p.node_id)
        if node is None or p.attempt < node.attempt:
            return  # a stale report of an attempt already superseded by a retry
        if node.status is NodeStatus.FAILED:
            reason = capped(f"node {p.node_id!r} failed in attempt {p.attempt}: {p.error}")
            self._emit(RunFailed, RunFailedPayload(reason=reason, node_id=p.node_id), "fail")
            return
        following = p.attempt + 1
        if node.terminal or following in node.scheduled or following in node.retry_due:
            return  # succeeded meanwhile, or this attempt's retry is decided already
        policy = self.state.node_def(p.node_id).retry
        delay = retry_delay_s(policy, p.attempt, self.state.run_id, p.node_id)
        if delay <= 0:
            self._schedule(p.node_id, following)
            return
        # Counted from the failure, not from now: a coordinator that decides late (a
        # restart, a backlog) plans the same moment as one that decided at once.
        due = ev.occurred_at + timedelta(seconds=delay)
        self._emit(
            NodeRetryPlanned,
            NodeRetryPlannedPayload(
                node_id=p.node_id, attempt=following, due_at=due, delay_s=delay
            ),
            "plan_retry",
            p.node_id,
            following,
        )

    def _on_item_failed(self, ev: NodeFailed) -> None:
        """An item's failure: its retry, as a node's (its inner node's policy), or, once it
        failed for good, what its map's failure policy says (``_advance_map``)."""
        p = ev.payload
        assert p.item is not None
        map_node = self.state.nodes.get(p.node_id)
        item = map_node.items.get(p.item) if map_node is not None else None
        if map_node is None or map_node.terminal or item is None or p.attempt < item.attempt:
            return
        if item.status is NodeStatus.FAILED:
            self._advance_map(p.node_id)
            return
        following = p.attempt + 1
        if item.terminal or following in item.scheduled or following in item.retry_due:
            return
        policy = retry_policy(self.state, p.node_id, p.item)
        key = item_key(p.node_id, p.item)
        delay = retry_delay_s(policy, p.attempt, self.state.run_id, key)
        if delay <= 0:
            self._schedule_item(p.node_id, p.item, following)
            return
        due = ev.occurred_at + timedelta(seconds=delay)
        self._emit(
            NodeRetryPlanned,
            NodeRetryPlannedPayload(
                node_id=p.node_id, attempt=following, due_at=due, delay_s=delay, item=p.item
            ),
            "plan_retry",
            key,
            following,
        )

    def _on_item_timer(self, ev: TimerFired) -> None:
        t = ev.payload
        assert t.item is not None
        map_node = self.state.nodes[t.node_id]
        item = map_node.items.get(t.item)
        if item is None or item.terminal:
            return
        if t.kind == "retry":
            if t.attempt in item.retry_due and t.attempt not in item.scheduled:
                self._schedule_item(t.node_id, t.item, t.attempt)
            return
        if t.kind != "timeout" or t.attempt != item.attempt or t.attempt in item.failures:
            return
        limit = f"{t.timeout_s:g}s" if t.timeout_s is not None else "its time limit"
        failure = self._emit(
            NodeFailed,
            NodeFailedPayload(
                node_id=t.node_id,
                attempt=t.attempt,
                error=f"timed out: item {t.item}, attempt {t.attempt} gave no answer within "
                f"{limit}",
                retryable=True,
                item=t.item,
            ),
            "time_out",
            item_key(t.node_id, t.item),
            t.attempt,
        )
        assert isinstance(failure, NodeFailed)
        self._on_failed(failure)

    def _on_timer(self, ev: TimerFired) -> None:
        """Act on a timer only if what it waited for is still so: the retry is still to
        be scheduled, or the attempt is still the latest and still unanswered."""
        t = ev.payload
        node = self.state.nodes.get(t.node_id)
        if node is None or node.terminal or self.state.cancel_requested:
            return
        if t.item is not None:
            self._on_item_timer(ev)
            return
        if t.kind == "retry":
            if t.attempt in node.retry_due and t.attempt not in node.scheduled:
                self._schedule(t.node_id, t.attempt)
            return
        if t.kind == "event":
            waits = node.awaiting
            if (
                node.status is NodeStatus.WAITING
                and waits is not None
                and waits.attempt == t.attempt
            ):
                self._end_wait(t.node_id, t.attempt, "timeout", None)
            return
        if t.kind == "approval":
            approval = node.approval
            if (
                node.status is NodeStatus.WAITING
                and approval is not None
                and approval.attempt == t.attempt
                and approval.decision is None
            ):
                outcome = approval.default_outcome or "rejected"
                self._decide_approval(
                    ApprovalDecidedPayload(
                        node_id=t.node_id,
                        attempt=t.attempt,
                        decision=outcome,
                        decided_by="timeout",
                        timed_out=True,
                    )
                )
            return
        if t.attempt != node.attempt or t.attempt in node.failures:
            return
        limit = f"{t.timeout_s:g}s" if t.timeout_s is not None else "its time limit"
        failure = self._emit(
            NodeFailed,
            NodeFailedPayload(
                node_id=t.node_id,
                attempt=t.attempt,
                error=f"timed out: attempt {t.attempt} gave no answer within {limit}",
                retryable=True,
            ),
            "time_out",
            t.node_id,
            t.attempt,
        )
        assert isinstance(failure, NodeFailed)
        self._on_failed(failure)

    def _on_event_received(self, ev: EventReceived) -> None:
        """An outside event for a wait_event node: taken if the node still waits for it (that
        name, key and attempt); otherwise (it was received already, timed out, or the run
        is being cancelled) nothing happens, as for a timer that comes late."""
        p = ev.payload
        node = self.state.nodes.get(p.node_id)
        if node is None or node.terminal or self.state.cancel_requested:
            return
        waits = node.awaiting
        if (
            node.status is NodeStatus.WAITING
            and waits is not None
            and (waits.attempt, waits.name, waits.key) == (p.attempt, p.name, p.key)
        ):
            self._end_wait(p.node_id, p.attempt, "received", p.data)

    def _on_child_finished(self, ev: SubworkflowFinished) -> None:
        """A subworkflow node's child run finished: the node succeeds with the child's
        output, or fails with its reason, if it still waits for that child (a late one, of
        an attempt given up or a run being cancelled, changes nothing). A child's failure is
        not retried: the child had its own nodes' retries, and a retried start at every
        level of a deep tree would multiply."""
        p = ev.payload
        node = self.state.nodes.get(p.node_id)
        if node is None or node.terminal or self.state.cancel_requested:
            return
        child = node.child
        if (
            node.status is not NodeStatus.WAITING
            or child is None
            or (child.attempt, child.run_id) != (p.attempt, p.child_run_id)
            or node.attempt != p.attempt
        ):
            return
        if p.status == "COMPLETED":
            size = json_size(p.output) or 0
            payload = NodeSucceededPayload(
                node_id=p.node_id,
                attempt=p.attempt,
                output=p.output,
                output_inline=True,
                output_size=size,
            )
            self._emit(NodeSucceeded, payload, "child_completed", p.node_id, p.attempt)
            self._settle([e.node for e in self.state.node_def(p.node_id).successors])
            return
        how = "was cancelled" if p.status == "CANCELLED" else "failed"
        error = capped(f"child run {p.child_run_id} {how}: {p.error or 'no reason given'}")
        failure = self._emit(
            NodeFailed,
            NodeFailedPayload(node_id=p.node_id, attempt=p.attempt, error=error, retryable=False),
            "child_failed",
            p.node_id,
            p.attempt,
        )
        assert isinstance(failure, NodeFailed)
        self._on_failed(failure)

    def _end_wait(self, node_id: str, attempt: int, outcome: str, data: Any) -> None:
        """A wait_event node succeeds with the event's data (None on timeout), and its
        ``received`` or ``timeout`` edges are taken."""
        size = len(canonical_json(data))
        payload = NodeSucceededPayload(
            node_id=node_id,
            attempt=attempt,
            output=data,
            output_inline=True,
            output_size=size,
            outcome=outcome,
        )
        self._emit(NodeSucceeded, payload, f"event_{outcome}", node_id, attempt)
        self._settle([e.node for e in self.state.node_def(node_id).successors])

    def _on_decision(self, ev: ApprovalSubmitted) -> None:
        """Accept a person's decision only for a node that waits for one and has none yet;
        otherwise refuse it with a reason they can act on. Either way it is an event."""
        p = ev.payload
        refusal = self._refusal(ev)
        if refusal is not None:
            self._record(decision_refused(ev, refusal, tenant=self.state.tenant, now=self.now))
            return
        approval = self.state.nodes[p.node_id].approval
        assert approval is not None  # no refusal: the node waits, so it has asked
        if approval.kind == "budget":
            self._on_budget_decision(ev, approval)
            return
        self._decide_approval(self._decided_payload(ev, approval))

    def _decided_payload(self, ev: ApprovalSubmitted, approval: Approval) -> ApprovalDecidedPayload:
        p = ev.payload
        return ApprovalDecidedPayload(
            node_id=p.node_id,
            attempt=approval.attempt,
            decision=p.decision,
            comment=capped(p.comment, COMMENT_MAX_CHARS) if p.comment is not None else None,
            decided_by=ev.actor.id,
            submission_id=ev.event_id,
        )

    def _refusal(self, ev: ApprovalSubmitted) -> str | None:
        """Why ``ev``'s decision cannot be taken now, or None if it can."""
        node_id = ev.payload.node_id
        if self.state.cancel_requested:
            return "the run is being cancelled"
        if node_id not in self.state.nodes:
            return f"the run has no node {node_id!r}"
        node = self.state.nodes[node_id]
        node_type = self.state.node_def(node_id).type
        approval = node.approval
        on_budget = approval is not None and approval.kind == "budget"
        if node_type == "agent" and not on_budget:
            return (
                f"node {node_id!r} is an agent node that does not wait on the run's budget; "
                "only hitl nodes, and agent nodes waiting on the budget, take decisions"
            )
        if node_type not in ("hitl", "agent"):
            return f"node {node_id!r} is a {node_type!r} node; only hitl nodes take decisions"
        if approval is not None and approval.decision is not None:
            by = "its time limit" if approval.decided_by == "timeout" else approval.decided_by
            return f"node {node_id!r} was decided already: {approval.decision} by {by}"
        if node.status is not NodeStatus.WAITING:
            return (
                f"node {node_id!r} is not waiting for a decision (it is "
                f"{node.status.value}); decide once its approval is requested"
            )
        if ev.payload.budget is not None and not on_budget:
            return (
                f"node {node_id!r} waits for a decision, not on the run's budget: a budget is "
                "given only to approve a node that waits on it"
            )
        return None

    def _on_budget_decision(self, ev: ApprovalSubmitted, approval: Approval) -> None:
        """A decision on a node that waits on the run's budget. Rejected: the node fails
        with the reason it waited. Approved with a raise that lets its next call fit
        (``run_model.budgets.judge_raise``): the budget is raised and the node runs again in
        a new attempt, whose conversation starts afresh (it lived in the worker that
        stopped). Any other approval is refused, and the node goes on waiting."""
        p = ev.payload
        decided = self._decided_payload(ev, approval)
        if p.decision == "rejected":
            self._emit(ApprovalDecided, decided, "decide_approval", p.node_id, approval.attempt)
            why = f"{approval.reason}; raising the budget was rejected by {ev.actor.id}"
            self._fail_node(p.node_id, approval.attempt, why, "fail_budget")
            return
        verdict = judge_raise(self.state, ev)
        if isinstance(verdict, str):
            self._record(decision_refused(ev, verdict, tenant=self.state.tenant, now=self.now))
            return
        self._emit(ApprovalDecided, decided, "decide_approval", p.node_id, approval.attempt)
        self._emit(BudgetRaised, verdict, "raise_budget", p.node_id, approval.attempt)
        self._schedule(p.node_id, self.state.nodes[p.node_id].attempt + 1)

    def _on_turn(self, ev: TurnRequested) -> None:
        """Answer an agent's request for its next model call (``run_model.budgets``): with
        the budget exceeded, the node fails or waits for a raise, as the budget says."""
        answer = answer_turn(self.state, ev.payload)
        if isinstance(answer, TurnGrantedPayload):
            self._emit(TurnGranted, answer, "grant_turn", answer.node_id, answer.attempt)
        elif isinstance(answer, BudgetExceededPayload):
            self._emit(BudgetExceeded, answer, "exceed_budget", answer.node_id, answer.attempt)
            if answer.budget.on_exceed == "fail":
                self._fail_node(answer.node_id, answer.attempt, answer.reason, "fail_budget")

    def _fail_node(self, node_id: str, attempt: int, error: str, decision: str) -> None:
        """Fail ``node_id`` for good in ``attempt``, decided here (no retry could do better)."""
        failure = self._emit(
            NodeFailed,
            NodeFailedPayload(
                node_id=node_id, attempt=attempt, error=capped(error), retryable=False
            ),
            decision,
            node_id,
            attempt,
        )
        assert isinstance(failure, NodeFailed)
        self._on_failed(failure)

    def _decide_approval(self, decided: ApprovalDecidedPayload) -> None:
        self._emit(ApprovalDecided, decided, "decide_approval", decided.node_id, decided.attempt)
        self._settle([e.node for e in self.state.node_def(decided.node_id).successors])

    def _on_patch(self, ev: PatchSubmitted) -> None:
        """Judge a patch whole (``run_model.patching``). Accepted: the run is at the
        new version from this event on, and every pending node whose predecessors are all
        finished now (added after a finished node, or a join that lost a predecessor) is
        scheduled or skipped at once. Refused: nothing changes, and the reasons say why.
        A patch whose run.patch_applied (the new definition and IR inline) would be larger
        than an event may be is refused too: its size is measured on the event itself."""
        before = self.state.version
        verdict = judge(self.state, ev, self.limits)
        if isinstance(verdict, Refused):
            self._reject_patch(ev, verdict.reasons, verdict.stale)
            return
        applied = self._decided(
            PatchApplied,
            PatchAppliedPayload(
                patch_id=ev.event_id,
                from_version=before,
                to_version=verdict.ir.version,
                definition=verdict.definition,
                ir=verdict.ir,
                definition_ref=json_ref(verdict.definition),
                ir_ref=json_ref(verdict.ir.model_dump(mode="json")),
                added_nodes=verdict.added,
                removed_nodes=verdict.removed,
                changed_nodes=verdict.changed,
                agent_spawns=verdict.agent_spawns,
            ),
            "apply_patch",
        )
        too_large = _unappendable(applied)
        if too_large is not None:
            self._reject_patch(ev, [too_large], stale=False)
            return
        self._record(applied)
        self.rank = {node_id: i for i, node_id in enumerate(self.state.ir.order)}
        self._settle_pending()

    def _reject_patch(self, ev: PatchSubmitted, reasons: list[str], stale: bool) -> None:
        current = self.state.current_definition() if stale else None
        self._record(
            patch_rejected(
                ev,
                reasons,
                tenant=self.state.tenant,
                now=self.now,
                current_version=self.state.version,
                current_definition=current,
            )
        )

    def _on_forked(self) -> None:
        """A fork goes on from its point as the source would have: every pending node whose
        predecessors had all finished is scheduled (or skipped) now, the rest follow as
        usual. A node that had failed for good fails the fork at once, as it failed the
        source; a point where everything had finished completes it (``_maybe_complete``)."""
        failure = fork_point_failure(self.state)
        if failure is not None:
            node_id, error = failure
            reason = capped(f"node {node_id!r} had failed at the fork point: {error}")
            self._emit(RunFailed, RunFailedPayload(reason=reason, node_id=node_id), "fail")
            return
        self._settle_pending()

    def _settle_pending(self) -> None:
        """Settle every PENDING node (after a change of the graph or of its state at once)."""
        pending = NodeStatus.PENDING
        self._settle([n for n, node in self.state.nodes.items() if node.status is pending])

    def _cancel(self, reason: str | None) -> None:
        """Nothing new starts; attempts in flight are abandoned (a late answer is ignored,
        since a finished run folds nothing); every unfinished node is skipped with a reason
        that says so, so that the read model shows no node still waiting."""
        for node_id in self.state.ir.order:
            node = self.state.nodes[node_id]
            if node.terminal:
                continue
            if node.status in (NodeStatus.SCHEDULED, NodeStatus.RUNNING):
                why = f"run cancelled; attempt {node.attempt} was abandoned in flight"
            elif node.status is NodeStatus.WAITING and node.child is not None:
                why = f"run cancelled while the node waited for its child run {node.child.run_id}"
            elif node.status is NodeStatus.WAITING:
                why = "run cancelled while the node waited for a decision"
            else:
                why = "run cancelled before the node started"
            self._emit(
                NodeSkipped, NodeSkippedPayload(node_id=node_id, reason=why), "skip", node_id
            )
        self._emit(RunCancelled, RunCancelledPayload(reason=reason), "cancel")

    # --- readiness, with dead-path elimination ------------------------------------------

    def _settle(self, candidates: list[str]) -> None:
        """Schedule or skip every candidate whose predecessors have all finished; skips
        cascade to their successors. Candidates go in topological order: deterministic."""
        pending = set(candidates)
        while pending and not self.state.finished:
            node_id = min(pending, key=self.rank.__getitem__)
            pending.discard(node_id)
            node = self.state.nodes[node_id]
            if node.status is not NodeStatus.PENDING:
                continue
            if not predecessors_finished(self.state, node_id):
                continue
            if any(
                self.state.nodes[e.node].status is NodeStatus.FAILED
                for e in self.state.node_def(node_id).predecessors
            ):
                continue  # the run has failed; nothing new starts
            definition = self.state.node_def(node_id)
            live = not definition.predecessors or any(
                edge_live(self.state, e) for e in definition.predecessors
            )
            if live and definition.type == MAP:
                self._start_map(node_id)
                continue
            if live and self._routable(definition.type):
                self._schedule(node_id, 1)
                continue
            if live:
                message = capped(
                    f"node {node_id!r} has type {definition.type!r}, which no worker runs; "
                    "it is skipped"
                )
                self._emit(
                    RunWarning,
                    RunWarningPayload(node_id=node_id, message=message),
                    "warn_unknown_type",
                    node_id,
                )
                reason = f"unknown node type {definition.type!r}"
            else:
                reason = capped(dead_reason(self.state, node_id))
            self._emit(
                NodeSkipped, NodeSkippedPayload(node_id=node_id, reason=reason), "skip", node_id
            )
            pending.update(e.node for e in definition.successors)

    # --- map nodes (run_model.mapping) -------------------------------------------------

    def _start_map(self, node_id: str) -> None:
        """Read the map's list and start its first items; a list that cannot be read fails
        the node with the reason."""
        spec = spec_of(self.state, node_id)
        items = resolve_over(self.state, spec.over) if isinstance(spec, MapConfig) else spec
        if isinstance(items, str):
            self._fail_node(node_id, 1, f"map node {node_id!r}: {items}", "fail_map")
            return
        assert isinstance(spec, MapConfig)
        self._emit(
            MapStarted,
            MapStartedPayload(
                node_id=node_id,
                items=len(items),
                max_parallel=spec.max_parallel,
                failure=spec.failure,
            ),
            "start_map",
            node_id,
        )
        self._advance_map(node_id)

    def _advance_map(self, node_id: str) -> None:
        """After an item finished (or the map started): fail the map (``fail_fast`` and an
        item failed for good), finish it (every item finished), or start items up to
        ``max_parallel`` unfinished."""
        node = self.state.nodes[node_id]
        spec = spec_of(self.state, node_id)
        if node.terminal or node.map_items is None or not isinstance(spec, MapConfig):
            return
        failed = first_failure(node)
        if failed is not None and spec.failure == "fail_fast":
            index, error = failed
            why = f"map node {node_id!r}: item {index} failed: {error}"
            self._fail_node(node_id, 1, why, "fail_map")
            return
        if all_finished(node):
            self._finish_map(node_id, spec)
            return
        if self.state.cancel_requested:
            return
        slots = spec.max_parallel - unfinished(node)
        if slots <= 0:
            return
        indices = next_items(node, slots)
        if not indices:
            return
        items = resolve_over(self.state, spec.over)
        assert isinstance(items, list)  # it was read when the map started, from final facts
        for index in indices:
            self._schedule_item(node_id, index, 1, items[index])

    def _finish_map(self, node_id: str, spec: MapConfig) -> None:
        output = map_output(self.state.nodes[node_id], spec.failure)
        too_large = output_too_large(output)
        if too_large is not None:
            self._fail_node(node_id, 1, f"map node {node_id!r}: {too_large}", "fail_map")
            return
        size = json_size(output) or 0
        self._emit(
            NodeSucceeded,
            NodeSucceededPayload(
                node_id=node_id, attempt=1, output=output, output_inline=True, output_size=size
            ),
            "finish_map",
            node_id,
        )
        self._settle([e.node for e in self.state.node_def(node_id).successors])

    def _schedule_item(self, node_id: str, index: int, attempt: int, value: Any = _UNREAD) -> None:
        """Schedule ``attempt`` of the map's item ``index``: a task of the inner type, with
        the item and its index for the templates."""
        spec = spec_of(self.state, node_id)
        assert isinstance(spec, MapConfig)
        if value is _UNREAD:
            items = resolve_over(self.state, spec.over)
            assert isinstance(items, list)
            value = items[index]
        inner = spec.node
        scheduled = self._emit(
            NodeScheduled,
            NodeScheduledPayload(
                node_id=node_id,
                node_type=inner.type,
                attempt=attempt,
                task_topic=task_topic(inner.type),
                item=index,
            ),
            "schedule",
            item_key(node_id, index),
            attempt,
        )
        self.tasks.append(self._task(scheduled, node_id, attempt, inner, index=index, item=value))

    def _routable(self, node_type: str) -> bool:
        """Whether some worker takes tasks of ``node_type``: a built-in type, or a registered
        type the run's workflow was published (or patched) with (``node_types``)."""
        return node_type in TASK_TYPES or node_type in self.state.ir.node_types

    def _schedule(self, node_id: str, attempt: int) -> None:
        definition = self.state.node_def(node_id)
        topic = task_topic(definition.type)
        scheduled = self._emit(
            NodeScheduled,
            NodeScheduledPayload(
                node_id=node_id, node_type=definition.type, attempt=attempt, task_topic=topic
            ),
            "schedule",
            node_id,
            attempt,
        )
        patches = may_patch(definition.type, definition.config)
        agent = definition.type == "agent"
        call = self._subworkflow_call(definition) if definition.type == SUBWORKFLOW else None
        self.tasks.append(
            self._task(
                scheduled,
                node_id,
                attempt,
                definition,
                # Only a node that may patch is shown what it patches: tasks stay small.
                definition=self.state.current_definition() if patches else None,
                agent_limits=self.state.agent_limits if agent else None,
                tool_types=self._tool_types(definition.config) if agent else None,
                tool_calls=self._finished_tool_calls(node_id) if agent else [],
                subworkflow=call,
            )
        )

    def _subworkflow_call(self, definition: IRNode) -> SubworkflowCall:
        """What a subworkflow node's task carries: the run's depth, and the version pinned
        at submission for the workflow it calls (``schemas.subworkflow_node``)."""
        name = definition.config.get("workflow")
        pinned = None
        if isinstance(name, str) and name:
            pinned = self.state.subworkflows.get(workflow_id_for(self.state.tenant, name))
        return SubworkflowCall(depth=self.state.depth, pinned=pinned)

    def _task(
        self, scheduled: Event, node_id: str, attempt: int, spec: IRNode | MapInner, **more: Any
    ) -> NodeTask:
        """The work order of a scheduled attempt: what ``spec`` (a node, or a map node's
        inner node) runs and how, with the run context its templates read, and ``more``."""
        return NodeTask(
            task_id=scheduled.event_id,
            run_id=self.state.run_id,
            tenant=self.state.tenant,
            node_id=node_id,
            node_type=spec.type,
            attempt=attempt,
            config=spec.config,
            timeout_s=spec.timeout_s,
            concurrency=spec.concurrency,
            rate_limit=spec.rate_limit,
            input=self.state.input,
            nodes=self._context(),
            scheduled_at=self.now,
            version=self.state.version,
            **more,
        )

    def _tool_types(self, config: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """The registered node types an agent names in its tools, as the run's IR has them
        (``WorkflowIR.node_types``, filled at publish); None when it names none."""
        names = registered_type_names(config.get("tools"))
        known = self.state.ir.node_types
        types = {name: known[name].model_dump(mode="json") for name in names if name in known}
        return types or None

    def _finished_tool_calls(self, node_id: str) -> list[ToolCallRecord]:
        """The node's tool calls that answered, in a stable order: a retried attempt reuses
        them instead of calling again (``schemas.agent_tools``)."""
        calls = self.state.nodes[node_id].tool_calls
        return [calls[k] for k in sorted(calls) if calls[k].ok]

    def _context(self) -> dict[str, NodeContext]:
        """Every node finished so far (succeeded or skipped), as templates see it."""
        out = {}
        for node_id, node in self.state.nodes.items():
            if node.status is NodeStatus.SUCCEEDED:
                out[node_id] = NodeContext(
                    status=node.status.value,
                    output=node.output if node.output_inline else None,
                    output_ref=None if node.output_inline else node.output_ref,
                )
            elif node.status is NodeStatus.SKIPPED:
                out[node_id] = NodeContext(status=node.status.value)
        return out

    def _maybe_complete(self) -> None:
        nodes = self.state.nodes
        if self.state.status not in (RunStatus.RUNNING, RunStatus.WAITING):
            return
        if not all(n.terminal for n in nodes.values()):
            return
        if any(n.status is NodeStatus.FAILED for n in nodes.values()):
            return  # RunFailed was decided when the node failed
        self._emit(RunCompleted, completion(self.state), "complete")

    # --- making events ------------------------------------------------------------------

    def _emit(
        self,
        kind: type[Event],
        payload: Payload,
        decision: str,
        node_id: str = "",
        attempt: int = 0,
    ) -> Event:
        return self._record(self._decided(kind, payload, decision, node_id, attempt))

    def _decided(
        self,
        kind: type[EventT],
        payload: Payload,
        decision: str,
        node_id: str = "",
        attempt: int = 0,
    ) -> EventT:
        """The event of a decision about this decider's cause, not yet recorded."""
        return decided(
            kind,
            payload,
            self.cause,
            decision,
            tenant=self.state.tenant,
            now=self.now,
            node_id=node_id,
            attempt=attempt,
        )

    def _record(self, ev: EventT) -> EventT:
        """Send ``ev``, and fold it in so that later checks of this decision see it."""
        self.events.append(ev)
        folded = evolve(self.state, ev)
        assert folded is not None  # a known run stays known
        self.state = folded
        return ev


def _unappendable(ev: PatchApplied) -> str | None:
    """Why a patch's ``ev`` cannot be appended (its encoding is larger than an event may be,
    or it has none), or None if it can. Measured on the event itself: the definition and IR
    alone (``MAX_VERSION_BYTES``) leave out the lists of changed nodes and the envelope."""
    try:
        size = len(encode_event(ev)[1])
    except (ValueError, RecursionError) as e:  # a lone surrogate, nesting too deep
        return f"the patched workflow cannot be encoded as {ev.type}: {e}"
    if size > MAX_EVENT_BYTES:
        return (
            f"the patched workflow would make {ev.type} {size} bytes with its compiled form "
            f"inline, and an event may take at most {MAX_EVENT_BYTES}: make configs smaller, "
            "or patch fewer nodes at once"
        )
    return None
