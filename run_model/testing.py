"""Driving the decider without a broker: build IRs and the events a client or worker sends.

Used by the decider's tests and benchmarks; it has no I/O either. ``build_ir`` accepts node
types the publisher would refuse, so that the coordinator's own guard (an unknown type is
skipped, never hung on) can be exercised.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.canonical import canonical_json, sha256_hex
from schemas.envelope import Actor, Event, deterministic_id
from schemas.events import (
    ApprovalRequested,
    ApprovalRequestedPayload,
    ApprovalSubmitted,
    ApprovalSubmittedPayload,
    NodeFailed,
    NodeFailedPayload,
    NodeStarted,
    NodeStartedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
    PatchSubmitted,
    PatchSubmittedPayload,
    RunCancelRequested,
    RunCancelRequestedPayload,
    RunForked,
    RunForkedPayload,
    RunSubmitted,
    RunSubmittedPayload,
)
from schemas.ir import IREdge, IRNode, WorkflowIR
from schemas.ir_definition import definition_from_ir
from schemas.tasks import NodeTask
from schemas.workflow import RetryPolicy

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
USER = Actor(kind="user", id="key-1", tenant="acme")
WORKER = Actor(kind="system", id="worker", tenant="acme")

Edge = tuple[str, str] | tuple[str, str, str | None]


def build_ir(
    nodes: dict[str, str],
    edges: list[Edge],
    max_attempts: int = 1,
    backoff_s: float = 0,
    timeout_s: float | None = None,
) -> WorkflowIR:
    """An IR from ``{node id: type}`` (in definition order) and ``(from, to[, when])``;
    every node gets the same retry policy and time limit."""
    preds: dict[str, list[IREdge]] = defaultdict(list)
    succs: dict[str, list[IREdge]] = defaultdict(list)
    for edge in edges:
        a, b = edge[0], edge[1]
        when = edge[2] if len(edge) > 2 else None
        preds[b].append(IREdge(node=a, when=when))
        succs[a].append(IREdge(node=b, when=when))
    ir_nodes = {
        nid: IRNode(
            id=nid,
            type=kind,
            retry=RetryPolicy(max_attempts=max_attempts, backoff_s=backoff_s),
            timeout_s=timeout_s,
            predecessors=preds[nid],
            successors=succs[nid],
        )
        for nid, kind in nodes.items()
    }
    indegree = {nid: len(preds[nid]) for nid in nodes}
    ready = [nid for nid in nodes if indegree[nid] == 0]
    roots = list(ready)
    order: list[str] = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for e in succs[nid]:
            indegree[e.node] -= 1
            if indegree[e.node] == 0:
                ready.append(e.node)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    version = sha256_hex(canonical_json({"nodes": nodes, "edges": [list(e) for e in edges]}))
    return WorkflowIR(version=version, nodes=ir_nodes, roots=roots, order=order)


def run_submitted(run_id: str, ir: WorkflowIR, run_input: Any = None) -> RunSubmitted:
    return RunSubmitted(
        event_id=deterministic_id("submit", run_id),
        aggregate_id=run_id,
        occurred_at=EPOCH,
        correlation_id=run_id,
        actor=USER,
        payload=RunSubmittedPayload(
            workflow_id="wf-1",
            workflow_name="test",
            version=ir.version,
            input=run_input,
            definition=definition_from_ir(ir),
            ir=ir,
            definition_ref="cas://sha256:" + "0" * 64,
            ir_ref="cas://sha256:" + "1" * 64,
        ),
    )


def _report(kind: type[Event], task: NodeTask, payload: Any, tag: str) -> Event:
    # Workers derive their report's id from the task, so a redelivered task reports the
    # same event again (the coordinator drops it as a duplicate).
    return kind(
        event_id=deterministic_id(task.task_id, tag),
        aggregate_id=task.run_id,
        occurred_at=EPOCH,
        causation_id=task.task_id,
        correlation_id=task.run_id,
        actor=WORKER,
        payload=payload,
    )


def started(task: NodeTask) -> Event:
    payload = NodeStartedPayload(node_id=task.node_id, attempt=task.attempt, worker="w-1")
    return _report(NodeStarted, task, payload, "started")


def succeeded(task: NodeTask, output: Any = None) -> Event:
    size = len(canonical_json(output))
    payload = NodeSucceededPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        output=output,
        output_inline=True,
        output_ref="cas://sha256:" + sha256_hex(canonical_json(output)),
        output_size=size,
    )
    return _report(NodeSucceeded, task, payload, "succeeded")


def failed(task: NodeTask, error: str = "boom", retryable: bool = True) -> Event:
    payload = NodeFailedPayload(
        node_id=task.node_id, attempt=task.attempt, error=error, retryable=retryable
    )
    return _report(NodeFailed, task, payload, "failed")


def cancel_requested(run_id: str, reason: str = "user asked") -> Event:
    return RunCancelRequested(
        event_id=deterministic_id("cancel", run_id),
        aggregate_id=run_id,
        occurred_at=EPOCH,
        correlation_id=run_id,
        actor=USER,
        payload=RunCancelRequestedPayload(reason=reason),
    )


def approval_requested(
    task: NodeTask, timeout_s: float | None = None, default_outcome: str | None = None
) -> Event:
    """What the hitl worker appends once it has rendered the prompt."""
    due = EPOCH + timedelta(seconds=timeout_s) if timeout_s else None
    payload = ApprovalRequestedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        prompt=f"decide {task.node_id}",
        timeout_s=timeout_s,
        default_outcome=default_outcome,
        due_at=due,
    )
    return _report(ApprovalRequested, task, payload, "approval_requested")


def approval_submitted(
    run_id: str, node_id: str, decision: str, by: str = "alice", tag: str = "1"
) -> Event:
    """A person's decision as the command API appends it (``tag`` tells two apart)."""
    return ApprovalSubmitted(
        event_id=deterministic_id("decision", run_id, node_id, tag),
        aggregate_id=run_id,
        occurred_at=EPOCH,
        correlation_id=run_id,
        actor=Actor(kind="user", id=by, tenant=USER.tenant),
        payload=ApprovalSubmittedPayload(
            node_id=node_id,
            decision=decision,
            comment=f"{decision} by {by}",
        ),
    )


def patch_submitted(
    run_id: str,
    ops: list[Any],
    reason: str = "a change",
    *,
    agent_node: str | None = None,
    base_version: str | None = None,
    tag: str = "1",
) -> PatchSubmitted:
    """A patch as the command API (a person) or an agent node's worker appends it."""
    actor = (
        Actor(kind="agent", id=f"{run_id}/{agent_node}", tenant=USER.tenant) if agent_node else USER
    )
    return PatchSubmitted(
        event_id=deterministic_id("patch", run_id, tag),
        aggregate_id=run_id,
        occurred_at=EPOCH,
        correlation_id=run_id,
        actor=actor,
        payload=PatchSubmittedPayload(
            patch=ops,
            reason=reason,
            base_version=base_version,
            node_id=agent_node,
            attempt=1 if agent_node else None,
        ),
    )


def run_forked(
    fork_id: str,
    source: list[Event],
    at_seq: int,
    *,
    run_input: Any = None,
    keep_input: bool = True,
) -> RunForked:
    """What the command API appends to fork a run whose distinct events are ``source`` (in
    log order) after its first ``at_seq`` of them. The input is the source's unless
    ``keep_input`` is false (then ``run_input``). Positions are offsets of partition 0."""
    history = source[:at_seq]
    source_id = history[0].aggregate_id
    given = run_input
    if keep_input:
        first = history[0]
        given = first.payload.input if isinstance(first, RunSubmitted | RunForked) else None
    return RunForked(
        event_id=deterministic_id("fork", fork_id),
        aggregate_id=fork_id,
        occurred_at=EPOCH,
        causation_id=history[-1].event_id,
        correlation_id=fork_id,
        actor=USER,
        payload=RunForkedPayload(
            source_run_id=source_id,
            at=f"aob.runs.events:0:{at_seq - 1}",
            at_seq=at_seq,
            input=given,
            history=[ev.model_dump(mode="json") for ev in history],
        ),
    )
