"""Driving the decider without a broker: build IRs and the events a client or worker sends.

Used by the decider's tests and benchmarks; it has no I/O either. ``build_ir`` accepts node
types the publisher would refuse, so that the coordinator's own guard (an unknown type is
skipped, never hung on) can be exercised.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import reports
from schemas.agent_tools import arguments_digest, call_id
from schemas.budgets import AgentRunLimits, BudgetRaise
from schemas.canonical import canonical_json, sha256_hex
from schemas.compiler import topological_order
from schemas.envelope import Actor, Event, EventT, Payload, build_event, deterministic_id
from schemas.events import (
    ApprovalRequested,
    ApprovalRequestedPayload,
    ApprovalSubmitted,
    ApprovalSubmittedPayload,
    EventAwaited,
    EventAwaitedPayload,
    EventReceived,
    EventReceivedPayload,
    ModelCalled,
    ModelCalledPayload,
    PatchSubmitted,
    PatchSubmittedPayload,
    RunCancelRequested,
    RunCancelRequestedPayload,
    RunForked,
    RunForkedPayload,
    RunParent,
    RunSubmitted,
    RunSubmittedPayload,
    SubworkflowFinished,
    SubworkflowFinishedPayload,
    SubworkflowStarted,
    SubworkflowStartedPayload,
    TokenUsage,
    ToolCalled,
    ToolCalledPayload,
    TurnRequested,
    TurnRequestedPayload,
)
from schemas.ir import IREdge, IRNode, WorkflowIR
from schemas.ir_definition import definition_from_ir
from schemas.tasks import NodeTask
from schemas.workflow import RetryPolicy

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
USER = Actor(kind="user", id="key-1", tenant="acme")
WORKER = "w-1"  # the worker process that reports

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
    roots = [nid for nid in nodes if not preds[nid]]
    order = topological_order(ir_nodes)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    version = sha256_hex(canonical_json({"nodes": nodes, "edges": [list(e) for e in edges]}))
    return WorkflowIR(version=version, nodes=ir_nodes, roots=roots, order=order)


def _sent(
    kind: type[EventT],
    payload: Payload,
    run_id: str,
    *id_parts: str,
    actor: Actor = USER,
    causation_id: str | None = None,
) -> EventT:
    """What a client sends to run ``run_id``, at EPOCH, with an id made of ``id_parts``."""
    return build_event(
        kind,
        payload,
        event_id=deterministic_id(*id_parts),
        aggregate_id=run_id,
        causation_id=causation_id,
        occurred_at=EPOCH,
        actor=actor,
    )


def run_submitted(
    run_id: str,
    ir: WorkflowIR,
    run_input: Any = None,
    agent_limits: AgentRunLimits | None = None,
    **more: Any,
) -> RunSubmitted:
    """``more``: the payload's other fields (``parent``, ``depth``, ``subworkflows``)."""
    payload = RunSubmittedPayload(
        workflow_id="wf-1",
        workflow_name="test",
        version=ir.version,
        input=run_input,
        definition=definition_from_ir(ir),
        ir=ir,
        definition_ref="cas://sha256:" + "0" * 64,
        ir_ref="cas://sha256:" + "1" * 64,
        agent_limits=agent_limits,
        **more,
    )
    return _sent(RunSubmitted, payload, run_id, "submit", run_id)


# A task's reports, as the workers make them (``schemas.reports``), at EPOCH.


def started(task: NodeTask) -> Event:
    return reports.started(task, WORKER, at=EPOCH)


def succeeded(task: NodeTask, output: Any = None) -> Event:
    data = canonical_json(output)
    return reports.succeeded(task, output, "cas://sha256:" + sha256_hex(data), len(data), at=EPOCH)


def failed(task: NodeTask, error: str = "boom", retryable: bool = True) -> Event:
    return reports.failed(task, error, retryable=retryable, at=EPOCH)


def cancel_requested(run_id: str, reason: str = "user asked") -> Event:
    payload = RunCancelRequestedPayload(reason=reason)
    return _sent(RunCancelRequested, payload, run_id, "cancel", run_id)


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
    return reports.report(ApprovalRequested, task, payload, "approval_requested", at=EPOCH)


def approval_submitted(
    run_id: str,
    node_id: str,
    decision: str,
    by: str = "alice",
    tag: str = "1",
    *,
    budget: BudgetRaise | None = None,
) -> Event:
    """A person's decision as the command API appends it (``tag`` tells two apart), with a
    raise of the run's budget if ``budget`` is given."""
    payload = ApprovalSubmittedPayload(
        node_id=node_id, decision=decision, comment=f"{decision} by {by}", budget=budget
    )
    actor = Actor(kind="user", id=by, tenant=USER.tenant)
    return _sent(ApprovalSubmitted, payload, run_id, "decision", run_id, node_id, tag, actor=actor)


def event_awaited(task: NodeTask, name: str, key: str, timeout_s: float | None = None) -> Event:
    """What the wait_event worker appends once it has rendered the name and key."""
    due = EPOCH + timedelta(seconds=timeout_s) if timeout_s else None
    payload = EventAwaitedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        name=name,
        key=key,
        timeout_s=timeout_s,
        due_at=due,
    )
    return reports.report(EventAwaited, task, payload, "event_awaited", at=EPOCH)


def subworkflow_started(task: NodeTask, child_run_id: str, version: str = "v-child") -> Event:
    """What the subworkflow worker appends before it submits the child run."""
    payload = SubworkflowStartedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        child_run_id=child_run_id,
        workflow_id="wf-child",
        workflow_name="child",
        version=version,
    )
    return reports.report(SubworkflowStarted, task, payload, "subworkflow_started", at=EPOCH)


def subworkflow_finished(
    parent: RunParent, child_run_id: str, status: str, output: Any = None, error: str | None = None
) -> SubworkflowFinished:
    """What the coordinator appends to a parent when its child finishes."""
    payload = SubworkflowFinishedPayload(
        node_id=parent.node_id,
        attempt=parent.attempt,
        child_run_id=child_run_id,
        status=status,
        output=output,
        error=error,
    )
    return _sent(SubworkflowFinished, payload, parent.run_id, "finished", child_run_id, status)


def event_received(  # noqa: PLR0917 - the event's fields
    run_id: str, node_id: str, name: str, key: str, data: Any = None, attempt: int = 1
) -> Event:
    """An outside event as the command API appends it to a run whose node waits for it."""
    payload = EventReceivedPayload(
        node_id=node_id, attempt=attempt, name=name, key=key, data=data, posted_id=f"{name}/{key}"
    )
    return _sent(EventReceived, payload, run_id, "event", run_id, node_id, name, key)


def turn_requested(task: NodeTask, turn: int, model: str = "test-model") -> TurnRequested:
    """What the agent worker appends before model call ``turn`` of ``task``'s attempt."""
    payload = TurnRequestedPayload(
        node_id=task.node_id, attempt=task.attempt, turn=turn, model=model
    )
    return reports.report(TurnRequested, task, payload, "turn_requested", str(turn), at=EPOCH)


def model_called(
    task: NodeTask,
    turn: int,
    tokens: int,
    cost_usd: float | None = None,
    model: str = "test-model",
) -> ModelCalled:
    """What the agent worker appends once model call ``turn`` answered, ``tokens`` used
    (a fifth of them the completion's)."""
    completion = tokens // 5
    payload = ModelCalledPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        turn=turn,
        model=model,
        usage=TokenUsage(
            prompt_tokens=tokens - completion, completion_tokens=completion, total_tokens=tokens
        ),
        cost_usd=cost_usd,
    )
    return reports.report(ModelCalled, task, payload, "model_called", str(turn), at=EPOCH)


def tool_called(
    task: NodeTask,
    tool: str,
    arguments: Any,
    *,
    ordinal: int = 0,
    ok: bool = True,
    result: Any = None,
    error: str | None = None,
) -> ToolCalled:
    """What the agent worker appends once a tool call of ``task``'s attempt answered."""
    cid = call_id(task.run_id, task.node_id, tool, arguments, ordinal)
    payload = ToolCalledPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        call_id=cid,
        tool=tool,
        arguments_sha256=arguments_digest(arguments),
        ok=ok,
        result=result if ok else None,
        error=None if ok else (error or "it failed"),
        duration_ms=3.0,
    )
    return reports.report(ToolCalled, task, payload, "tool_called", cid, at=EPOCH)


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
    payload = PatchSubmittedPayload(
        patch=ops,
        reason=reason,
        base_version=base_version,
        node_id=agent_node,
        attempt=1 if agent_node else None,
    )
    return _sent(PatchSubmitted, payload, run_id, "patch", run_id, tag, actor=actor)


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
    payload = RunForkedPayload(
        source_run_id=source_id,
        at=f"aob.runs.events:0:{at_seq - 1}",
        at_seq=at_seq,
        input=given,
        history=[ev.model_dump(mode="json") for ev in history],
    )
    return _sent(RunForked, payload, fork_id, "fork", fork_id, causation_id=history[-1].event_id)
