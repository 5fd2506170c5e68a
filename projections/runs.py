"""Run events -> rows of ``runs`` and ``node_executions``: a pure fold.

The runner loads the current rows of the runs a batch touches, folds the batch's new events
into them here, in log order, and writes back the rows that changed. Rules:

- statuses are the run model's (``run_model.RunStatus``, ``NodeStatus``); a run's status
  never leaves a finished one (``RUN_FINISHED``);
- a node's status moves forward within an attempt and restarts with a newer attempt; an
  event of an older attempt changes nothing; SUCCEEDED and SKIPPED are final (FAILED is
  the latest attempt's outcome here: a later attempt restarts the row);
- a planned retry (NodeRetryPlanned) starts the next attempt as SCHEDULED, with
  ``scheduled_at`` the moment it is due, and keeps the error that caused it;
- ``attempts`` is the highest attempt seen; ``successes`` counts distinct NodeSucceeded
  events (it must stay at most 1: a check on exactly-once effects);
- ``updated_at`` is the newest event's ``occurred_at``, so a rebuild yields the same rows;
- a hitl node's ApprovalRequested makes it WAITING and opens its ``approvals`` row; the run
  is WAITING while a node waits and nothing else is in flight (``run_model.run_status``,
  the coordinator's own function);
  ApprovalDecided makes the node SUCCEEDED with the decision as output; ApprovalRefused is
  noted on the row; a run that ends first leaves the row CANCELLED;
- token usage of agent nodes is the sum of their ModelCalled events, failed attempts too,
  and so is their cost in dollars; their tool calls are their ToolCalled events, one entry
  per call id (a success replacing a failure of the same call);
- a wait_event node's EventAwaited makes it WAITING (the run too, as for a hitl node);
  the NodeSucceeded the coordinator decides on the event, or on its time limit, ends it;
  a subworkflow node's SubworkflowStarted makes it WAITING too, with its ``child_run_id``;
  a child run's RunSubmitted gives its row ``parent_run_id``, ``parent_node_id``, ``depth``;
- an agent's BudgetExceeded with ``on_exceed: wait`` makes it WAITING and opens an
  ``approvals`` row of kind BUDGET (with ``fail``, the NodeFailed that follows fails it);
  its ApprovalDecided leaves the node to what follows (a new attempt, or a failure);
  the run's ``budget`` is its RunSubmitted's, then each BudgetRaised's;
- a NodeQueued (a worker holds the task back for a limit) sets the node's
  ``waiting_reason`` while the row is SCHEDULED in that attempt; one that comes late (the
  node has moved on, or a newer attempt began) changes nothing, and the reason is cleared
  whenever the node's status moves, and when the run ends;
- a run's output is its RunCompleted's, with the outputs it names in ``output_elsewhere``
  (too large together for one event) taken from their node rows: the row holds it whole;
- a patch gets its ``run_patches`` row on PatchSubmitted (or on its verdict, if that comes
  first); the first verdict counts. RunSubmitted writes version 0 of ``run_versions``, each
  PatchApplied the next one, moves the run to its version, adds PENDING rows for the added
  nodes, deletes the removed ones (only ever PENDING) and retypes the changed ones; the new
  version's definition and IR are listed in ``blobs`` for the store to put in the CAS;
- RunForked makes a fork's rows at once (``_forked``): the carried history folded here,
  re-addressed to the fork, with the nodes the coordinator starts afresh reset to PENDING.

Rows keep more than the model's state (the failed attempt before its retry, a planned
retry as SCHEDULED): where the two could part, a property test over random histories
(``tests/unit/test_projection_model.py``) holds the rows' statuses to the model's fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from projections.map_items import item_event, kept_items, map_started
from projections.patch_rows import Blob, PatchRow
from read_model.rows import ApprovalRow, ForkRow, NodeRow, RunRow, VersionRow
from run_model import NODE_TERMINAL, RUN_FINISHED, NodeStatus, RunStatus, fold, run_status
from run_model.forking import fork_state
from schemas.envelope import Event
from schemas.events import (
    ApprovalDecided,
    ApprovalRefused,
    ApprovalRequested,
    BudgetExceeded,
    BudgetRaised,
    EventAwaited,
    MapStarted,
    ModelCalled,
    NodeFailed,
    NodeQueued,
    NodeRetryPlanned,
    NodeScheduled,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    PatchApplied,
    PatchRejected,
    PatchSubmitted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunForked,
    RunStarted,
    RunSubmitted,
    SubworkflowStarted,
    ToolCalled,
)

# A FAILED row is the latest attempt's outcome, not the node's: a later attempt restarts it.
NODE_FINAL = NODE_TERMINAL - {NodeStatus.FAILED}
# The order of a node's statuses within one attempt: a row never moves back.
NODE_RANK = {
    NodeStatus.PENDING: 0,
    NodeStatus.SCHEDULED: 1,
    NodeStatus.RUNNING: 2,
    NodeStatus.WAITING: 3,
    NodeStatus.FAILED: 4,
    NodeStatus.SKIPPED: 5,
    NodeStatus.SUCCEEDED: 5,
}


@dataclass
class RunFold:
    """The rows of some runs, and which of them the fold changed."""

    runs: dict[str, RunRow] = field(default_factory=dict)
    nodes: dict[tuple[str, str], NodeRow] = field(default_factory=dict)
    approvals: dict[tuple[str, str], ApprovalRow] = field(default_factory=dict)
    changed_runs: set[str] = field(default_factory=set)
    changed_nodes: set[tuple[str, str]] = field(default_factory=set)
    changed_approvals: set[tuple[str, str]] = field(default_factory=set)
    removed_nodes: set[tuple[str, str]] = field(default_factory=set)
    patches: dict[tuple[str, str], PatchRow] = field(default_factory=dict)
    changed_patches: set[tuple[str, str]] = field(default_factory=set)
    # The highest run_versions seq stored per run (loaded with the rows; absent: none yet).
    version_seq: dict[str, int] = field(default_factory=dict)
    new_versions: list[VersionRow] = field(default_factory=list)
    blobs: list[Blob] = field(default_factory=list)
    forks: list[ForkRow] = field(default_factory=list)
    _by_run: dict[str, dict[str, NodeRow]] = field(default_factory=dict)

    def add_node(self, row: NodeRow) -> NodeRow:
        self.nodes[(row.run_id, row.node_id)] = row
        self._by_run.setdefault(row.run_id, {})[row.node_id] = row
        return row

    def nodes_of(self, run_id: str) -> list[NodeRow]:
        return list(self._by_run.get(run_id, {}).values())

    def status_after(self, ev: Event) -> tuple[str | None, str | None, str | None]:
        """(run status, node id, node status) as they stand after ``ev`` was applied: the
        read model's history of the run, kept with the event. The node is the one the event
        is about (none for run-level events, or a node the run no longer has)."""
        run = self.runs.get(ev.aggregate_id)
        node_id = getattr(ev.payload, "node_id", None)
        node = self.nodes.get((ev.aggregate_id, node_id)) if isinstance(node_id, str) else None
        return (
            run.status if run else None,
            node_id if isinstance(node_id, str) else None,
            node.status if node else None,
        )

    def apply(self, ev: Event) -> None:
        """Fold one new (never seen before) event of run ``ev.aggregate_id``."""
        if isinstance(ev, RunForked) and ev.aggregate_id not in self.runs:
            self._forked(ev)
            return
        run = self._run(ev)
        run.event_count += 1
        run.updated_at = max(run.updated_at, ev.occurred_at)
        self.changed_runs.add(run.run_id)
        if isinstance(ev, RunSubmitted):
            self._submitted(run, ev)
        elif isinstance(ev, RunStarted):
            if run.status not in RUN_FINISHED:
                run.status = RunStatus.RUNNING
            run.started_at = run.started_at or ev.occurred_at
        elif isinstance(ev, RunCompleted | RunFailed | RunCancelled):
            self._finished(run, ev)
        elif isinstance(ev, NodeScheduled | NodeStarted | NodeSucceeded | NodeFailed | NodeSkipped):
            self._node_event(run, ev)
            self._refresh_status(run)
        elif isinstance(ev, NodeRetryPlanned):
            self._retry_planned(run, ev)
            self._refresh_status(run)
        elif isinstance(ev, MapStarted):
            map_started(self._node(run, ev.payload.node_id, "map"), ev)
            self._refresh_status(run)
        elif isinstance(ev, ApprovalRequested | ApprovalDecided | ApprovalRefused):
            self._approval_event(run, ev)
            self._refresh_status(run)
        elif isinstance(ev, ModelCalled):
            self._usage(run, ev)
        elif isinstance(ev, ToolCalled):
            self._tool_called(run, ev)
        elif isinstance(ev, NodeQueued):
            self._queued(run, ev)
        elif isinstance(ev, BudgetExceeded):
            self._budget_exceeded(run, ev)
            self._refresh_status(run)
        elif isinstance(ev, EventAwaited):
            w = ev.payload
            node = self._node(run, w.node_id)
            if _moves_forward(node, w.attempt, NodeStatus.WAITING):
                node.attempts, node.status = w.attempt, NodeStatus.WAITING
                node.waiting_reason = None
            self._refresh_status(run)
        elif isinstance(ev, SubworkflowStarted):
            s = ev.payload
            node = self._node(run, s.node_id)
            if _moves_forward(node, s.attempt, NodeStatus.WAITING):
                node.attempts, node.status = s.attempt, NodeStatus.WAITING
                node.waiting_reason = None
                node.child_run_id = s.child_run_id
            self._refresh_status(run)
        elif isinstance(ev, BudgetRaised):
            run.budget = ev.payload.budget.model_dump(mode="json")
        elif isinstance(ev, PatchSubmitted):
            self._patch(run, ev.event_id).submitted(ev, run.event_count)
        elif isinstance(ev, PatchApplied | PatchRejected):
            self._patch_decided(run, ev)
        # Other run events (warnings, cancel requests, timers, types added later) only enter
        # the event history and the run's updated_at.

    # --- runs ----------------------------------------------------------------------------

    def _run(self, ev: Event) -> RunRow:
        run = self.runs.get(ev.aggregate_id)
        if run is None:
            # Normally RunSubmitted creates it; a run first seen through a later event (its
            # RunSubmitted was poison) still gets a row, filled in as far as events tell.
            run = RunRow(
                run_id=ev.aggregate_id,
                tenant=ev.actor.tenant,
                workflow_id="",
                workflow_name="",
                version=str(getattr(ev.payload, "version", "")),
                status=RunStatus.PENDING,
                created_at=ev.occurred_at,
                updated_at=ev.occurred_at,
            )
            self.runs[run.run_id] = run
        return run

    def _submitted(self, run: RunRow, ev: RunSubmitted) -> None:
        p = ev.payload
        run.tenant = ev.actor.tenant
        run.workflow_id, run.workflow_name, run.version = p.workflow_id, p.workflow_name, p.version
        run.input = p.input
        run.created_at = min(run.created_at, ev.occurred_at)
        if p.agent_limits is not None and p.agent_limits.budget is not None:
            run.budget = p.agent_limits.budget.model_dump(mode="json")
        if p.parent is not None:
            run.parent_run_id, run.parent_node_id = p.parent.run_id, p.parent.node_id
        run.depth = p.depth
        for node_id in p.ir.order or list(p.ir.nodes):
            key = (run.run_id, node_id)
            if key not in self.nodes:
                self.add_node(NodeRow(run.run_id, node_id, p.ir.nodes[node_id].type))
                self.changed_nodes.add(key)
        if run.run_id not in self.version_seq:
            self.version_seq[run.run_id] = 0
            self.new_versions.append(
                VersionRow(
                    run_id=run.run_id,
                    seq=0,
                    version=p.version,
                    definition=p.definition,
                    definition_ref=p.definition_ref,
                    ir_ref=p.ir_ref,
                    created_at=ev.occurred_at,
                )
            )

    def _forked(self, ev: RunForked) -> None:
        """The fork's rows, as the coordinator starts it: the source's history up to the
        point, folded by these same rules for the fork's id (``history`` is facts, so a fork
        of a fork or a patched source come out right); then every node the coordinator
        starts afresh (not finished at the point: ``run_model.forking``) is PENDING
        with no attempt, so the fork's own attempt 1 moves it on. Finished nodes keep their
        rows (outputs, attempts, times, token usage) and decided approvals theirs; the run
        starts PENDING with the fork's input, as a submitted one. The carried events are
        the source's: they go to neither ``run_events`` nor ``run_patches`` of the fork."""
        fork_id, p = ev.aggregate_id, ev.payload
        history = p.history_events()
        point = fork_state(fold(None, history), ev)
        source = RunFold()
        for past in history:
            source.apply(past.model_copy(update={"aggregate_id": fork_id}))
        run = source.runs.get(fork_id) or self._run(ev)
        run.tenant, run.input, run.output, run.error = ev.actor.tenant, p.input, None, None
        run.status, run.event_count = RunStatus.PENDING, 1
        run.created_at = run.updated_at = ev.occurred_at
        run.started_at = run.finished_at = None
        self.runs[fork_id] = run
        self.changed_runs.add(fork_id)
        self.forks.append(ForkRow(fork_id, p.source_run_id, p.at, p.at_seq))
        finished = {n for n, node in point.nodes.items() if node.terminal} if point else set()
        for row in source.nodes_of(fork_id):
            kept = row if row.node_id in finished else NodeRow(fork_id, row.node_id, row.node_type)
            if row.node_id not in finished and point is not None and row.node_id in point.nodes:
                done = {i for i, item in point.nodes[row.node_id].items.items() if item.terminal}
                kept.items = kept_items(row.items, done)
            self.add_node(kept)
            self.changed_nodes.add((fork_id, row.node_id))
        for (run_id, node_id), approval in source.approvals.items():
            if node_id in finished and approval.decision is not None:
                approval.tenant = run.tenant
                self.approvals[(run_id, node_id)] = approval
                self.changed_approvals.add((run_id, node_id))
        if fork_id in source.version_seq:
            self.version_seq[fork_id] = source.version_seq[fork_id]
        # The versions' blobs are in the CAS already: the source's projection put them there.
        self.new_versions.extend(source.new_versions)

    def _finished(self, run: RunRow, ev: RunCompleted | RunFailed | RunCancelled) -> None:
        if run.status in RUN_FINISHED:
            return
        run.finished_at = ev.occurred_at
        for node in self.nodes_of(run.run_id):  # nothing waits any more
            if node.waiting_reason is not None:
                node.waiting_reason = None
                self.changed_nodes.add((run.run_id, node.node_id))
        if isinstance(ev, RunCompleted):
            run.status, run.output = RunStatus.COMPLETED, self._run_output(run, ev)
        elif isinstance(ev, RunFailed):
            where = f"node {ev.payload.node_id!r}: " if ev.payload.node_id else ""
            run.status, run.error = RunStatus.FAILED, f"{where}{ev.payload.reason}"
        else:
            run.status, run.error = RunStatus.CANCELLED, ev.payload.reason
        for key, approval in self.approvals.items():
            if key[0] == run.run_id and approval.status == "WAITING":
                approval.status = "CANCELLED"
                self.changed_approvals.add(key)

    def _run_output(self, run: RunRow, ev: RunCompleted) -> dict[str, Any]:
        """The run's whole output: what the event carries, and the outputs it names as
        elsewhere (too large together for one event) from their node rows, spelled as the
        coordinator spells a sink's output (``run_model.completion.sink_output``)."""
        output = dict(ev.payload.output)
        for node_id in ev.payload.output_elsewhere:
            node = self.nodes.get((run.run_id, node_id))
            if node is None:
                continue
            if node.output is None and node.output_ref is not None:
                output[node_id] = {"$ref": node.output_ref}
            else:
                output[node_id] = node.output
        return output

    def _refresh_status(self, run: RunRow) -> None:
        nodes = (NodeStatus(n.status) for n in self.nodes_of(run.run_id))
        run.status = run_status(RunStatus(run.status), nodes)

    # --- nodes ---------------------------------------------------------------------------

    def _node(self, run: RunRow, node_id: str, node_type: str = "") -> NodeRow:
        key = (run.run_id, node_id)
        node = self.nodes.get(key)
        if node is None:  # a node the IR did not list (added by a patch, say)
            node = self.add_node(NodeRow(run.run_id, node_id, node_type))
        if node_type and not node.node_type:
            node.node_type = node_type
        self.changed_nodes.add(key)
        return node

    def _node_event(self, run: RunRow, ev: Event) -> None:
        p: Any = ev.payload
        if getattr(p, "item", None) is not None:  # one item of a map node: in its row
            item_event(self._node(run, p.node_id), ev, p.item)
            return
        node = self._node(run, p.node_id, getattr(p, "node_type", ""))
        at = ev.occurred_at
        if isinstance(ev, NodeSucceeded):
            node.successes += 1  # counted even when stale: it measures duplicate effects
        if isinstance(ev, NodeSkipped):
            if node.status not in NODE_FINAL:
                node.status, node.finished_at = NodeStatus.SKIPPED, at
                node.waiting_reason = None
            return
        status = {
            NodeScheduled: NodeStatus.SCHEDULED,
            NodeStarted: NodeStatus.RUNNING,
            NodeSucceeded: NodeStatus.SUCCEEDED,
            NodeFailed: NodeStatus.FAILED,
        }[type(ev)]
        if not _moves_forward(node, p.attempt, status):
            return
        if p.attempt > node.attempts:  # a new attempt starts afresh
            node.attempts = p.attempt
            node.started_at = node.finished_at = None
        node.status, node.waiting_reason = status, None
        if isinstance(ev, NodeScheduled):
            node.scheduled_at = at
        elif isinstance(ev, NodeStarted):
            node.started_at = at
        elif isinstance(ev, NodeSucceeded):
            node.finished_at, node.error = at, None
            node.output = ev.payload.output if ev.payload.output_inline else None
            node.output_ref = ev.payload.output_ref
        elif isinstance(ev, NodeFailed):
            node.finished_at, node.error = at, ev.payload.error
        if isinstance(ev, NodeSucceeded | NodeFailed) and node.started_at is None:
            node.started_at = ev.payload.started_at  # for a quick attempt, told only here

    def _retry_planned(self, run: RunRow, ev: NodeRetryPlanned) -> None:
        p = ev.payload
        if p.item is not None:
            item_event(self._node(run, p.node_id), ev, p.item)
            return
        node = self._node(run, p.node_id)
        if not _moves_forward(node, p.attempt, NodeStatus.SCHEDULED):
            return
        node.attempts, node.status = p.attempt, NodeStatus.SCHEDULED
        node.scheduled_at, node.started_at, node.finished_at = p.due_at, None, None
        node.waiting_reason = None

    # --- approvals and usage ------------------------------------------------------------

    def _approval_event(
        self, run: RunRow, ev: ApprovalRequested | ApprovalDecided | ApprovalRefused
    ) -> None:
        key = (run.run_id, ev.payload.node_id)
        approval = self.approvals.get(key)
        if isinstance(ev, ApprovalRequested):
            r = ev.payload
            node = self._node(run, r.node_id)
            if _moves_forward(node, r.attempt, NodeStatus.WAITING):
                node.attempts, node.status = r.attempt, NodeStatus.WAITING
                node.waiting_reason = None
            if approval is None or r.attempt > approval.attempt:
                self.approvals[key] = ApprovalRow(
                    run_id=run.run_id,
                    node_id=r.node_id,
                    tenant=run.tenant,
                    attempt=r.attempt,
                    status="WAITING",
                    prompt=r.prompt,
                    requested_at=ev.occurred_at,
                    due_at=r.due_at,
                    default_outcome=r.default_outcome,
                )
                self.changed_approvals.add(key)
        elif isinstance(ev, ApprovalDecided):
            d = ev.payload
            node = self._node(run, d.node_id)
            # A raise of the budget is followed by the node's new attempt, a rejection by its
            # failure: those move the node, not the decision.
            on_budget = approval is not None and approval.kind == "BUDGET"
            if node.status not in NODE_FINAL and not on_budget:
                node.status, node.error = NodeStatus.SUCCEEDED, None
                node.finished_at, node.waiting_reason = ev.occurred_at, None
                node.output, node.output_ref = d.node_output(), None
            if approval is not None and approval.decision is None:
                approval.status = d.decision.upper()
                approval.decision, approval.comment = d.decision, d.comment
                approval.decided_by, approval.decided_at = d.decided_by, ev.occurred_at
                approval.timed_out = d.timed_out
                self.changed_approvals.add(key)
        elif approval is not None:
            refusal = {
                "decision": ev.payload.decision,
                "reason": ev.payload.reason,
                "at": ev.occurred_at.isoformat(),
                "submission_id": ev.payload.submission_id,
            }
            approval.refusals = [*approval.refusals, refusal]
            self.changed_approvals.add(key)

    # --- patches -------------------------------------------------------------------------

    def _patch(self, run: RunRow, patch_id: str) -> PatchRow:
        key = (run.run_id, patch_id)
        patch = self.patches.get(key)
        if patch is None:
            patch = self.patches[key] = PatchRow(run.run_id, patch_id, seq=run.event_count)
        self.changed_patches.add(key)
        return patch

    def _patch_decided(self, run: RunRow, ev: PatchApplied | PatchRejected) -> None:
        if not self._patch(run, ev.payload.patch_id).decided(ev) or isinstance(ev, PatchRejected):
            return
        p = ev.payload
        run.version = p.to_version
        for node_id in p.removed_nodes:  # only ever PENDING ones: nothing of them is lost
            key = (run.run_id, node_id)
            if self.nodes.pop(key, None) is not None:
                self._by_run.get(run.run_id, {}).pop(node_id, None)
            self.changed_nodes.discard(key)
            self.removed_nodes.add(key)
        for node_id in [*p.added_nodes, *p.changed_nodes]:
            spec = p.ir.nodes.get(node_id)
            if spec is None:
                continue
            key = (run.run_id, node_id)
            self.removed_nodes.discard(key)
            self._node(run, node_id).node_type = spec.type
        seq = self.version_seq.get(run.run_id, 0) + 1
        self.version_seq[run.run_id] = seq
        self.new_versions.append(
            VersionRow(
                run_id=run.run_id,
                seq=seq,
                version=p.to_version,
                definition=p.definition,
                definition_ref=p.definition_ref,
                ir_ref=p.ir_ref,
                created_at=ev.occurred_at,
                patch_id=p.patch_id,
                from_version=p.from_version,
            )
        )
        where = f"version {p.to_version[:12]} of run {run.run_id}"
        self.blobs.append(Blob(p.definition_ref, p.definition, f"definition of {where}"))
        self.blobs.append(Blob(p.ir_ref, p.ir.model_dump(mode="json"), f"IR of {where}"))
        self._refresh_status(run)

    def _queued(self, run: RunRow, ev: NodeQueued) -> None:
        p = ev.payload
        key = (run.run_id, p.node_id)
        node = self.nodes.get(key)
        if p.item is not None:
            return  # an item's wait is not shown (its map runs)
        if node is None or node.status != NodeStatus.SCHEDULED or p.attempt != node.attempts:
            return  # the node has moved on (or it is not this run's): the wait is over
        node.waiting_reason = p.reason
        self.changed_nodes.add(key)

    def _usage(self, run: RunRow, ev: ModelCalled) -> None:
        node = self._node(run, ev.payload.node_id)
        u = ev.payload.usage
        node.prompt_tokens += u.prompt_tokens
        node.completion_tokens += u.completion_tokens
        node.total_tokens += u.total_tokens
        node.cached_tokens += u.cached_tokens
        node.cost_usd += ev.payload.cost_usd or 0.0

    def _tool_called(self, run: RunRow, ev: ToolCalled) -> None:
        """A call once per id: a call a later attempt made again (it had failed) replaces
        its entry, and counts once."""
        p = ev.payload
        node = self._node(run, p.node_id)
        entry = {
            "call_id": p.call_id,
            "tool": p.tool,
            "attempt": p.attempt,
            "ok": p.ok,
            "error": p.error,
            "duration_ms": p.duration_ms,
            "result_ref": p.result_ref,
            "arguments_sha256": p.arguments_sha256,
            "at": ev.occurred_at.isoformat(),
        }
        calls = [c for c in (node.tool_calls or []) if isinstance(c, dict)]
        same = [i for i, c in enumerate(calls) if c.get("call_id") == p.call_id]
        if not same:
            calls.append(entry)
        elif p.ok and not calls[same[0]].get("ok"):
            calls[same[0]] = entry
        node.tool_calls = calls
        node.tool_call_count = len(calls)

    def _budget_exceeded(self, run: RunRow, ev: BudgetExceeded) -> None:
        """With ``wait``, the node waits for a raise, as a hitl node for a decision."""
        b = ev.payload
        if b.budget.on_exceed != "wait":
            return  # the NodeFailed decided with it fails the node
        node = self._node(run, b.node_id)
        if _moves_forward(node, b.attempt, NodeStatus.WAITING):
            node.attempts, node.status = b.attempt, NodeStatus.WAITING
        key = (run.run_id, b.node_id)
        approval = self.approvals.get(key)
        if approval is None or b.attempt > approval.attempt:
            self.approvals[key] = ApprovalRow(
                run_id=run.run_id,
                node_id=b.node_id,
                tenant=run.tenant,
                attempt=b.attempt,
                status="WAITING",
                prompt=f"raise the run's budget so that node {b.node_id!r} can go on?",
                requested_at=ev.occurred_at,
                kind="BUDGET",
                reason=b.reason,
            )
            self.changed_approvals.add(key)


def _moves_forward(node: NodeRow, attempt: int, status: NodeStatus) -> bool:
    if node.status in NODE_FINAL or attempt < node.attempts:
        return False
    return attempt > node.attempts or NODE_RANK[status] > NODE_RANK[NodeStatus(node.status)]
