"""Runs that start runs (``subworkflow`` nodes): what a parent and its children tell each other.

A child knows its parent from its run.submitted (``RunState.parent``); a parent knows each
child from the node's ``run.subworkflow_started`` (``NodeState.child``). They speak through
events appended to the other's stream, which the coordinator sends to that run's partition
(``Decision.elsewhere``):

- when a child finishes, ``run.subworkflow_finished`` goes to its parent with the child's
  output, or its reason (``finished_notice``); the parent's decider then ends the node;
- when a parent finishes without completing (cancelled, or failed), every child still running
  is asked to cancel (``cancel_children``), and each of those asks its own, down the tree.

Ids are derived from the cause and the run spoken to, as every decision's is, so a decision
taken again after a crash appends the same events, which consumers drop.
"""

from __future__ import annotations

from datetime import datetime

from run_model.completion import run_output
from run_model.limits import capped, json_size
from run_model.mapping import MAP_OUTPUT_MAX_BYTES
from run_model.state import NodeStatus, RunState, RunStatus
from schemas.envelope import Event, EventT, Payload, build_event, deterministic_id, system_actor
from schemas.events import (
    RunCancelRequested,
    RunCancelRequestedPayload,
    SubworkflowFinished,
    SubworkflowFinishedPayload,
)

COMPONENT = "coordinator"
# A child's output travels inline to its parent, as a map's does (the coordinator writes no
# blob); each sink's output over 16 KB is in it by its CAS reference already.
CHILD_OUTPUT_MAX_BYTES = MAP_OUTPUT_MAX_BYTES


def to_run(
    kind: type[EventT],
    payload: Payload,
    cause: Event,
    decision: str,
    run_id: str,
    *,
    tenant: str,
    now: datetime,
) -> EventT:
    """An event of a decision about ``cause`` appended to another run, ``run_id``."""
    return build_event(
        kind,
        payload,
        event_id=deterministic_id(cause.event_id, decision, run_id),
        aggregate_id=run_id,
        causation_id=cause.event_id,
        occurred_at=now,
        actor=system_actor(COMPONENT, tenant),
    )


def live_children(state: RunState) -> dict[str, str]:
    """Node -> the child run it waits for, for each unfinished node of ``state`` waiting."""
    return {
        node_id: node.child.run_id
        for node_id, node in state.nodes.items()
        if node.child is not None
        and not node.terminal
        and node.child.attempt == node.attempt
        and node.status is NodeStatus.WAITING
    }


def finished_notice(state: RunState, cause: Event, now: datetime) -> SubworkflowFinished | None:
    """What a finished child tells its parent (None for a run that has no parent)."""
    parent = state.parent
    if parent is None or not state.finished:
        return None
    output = None
    error = None
    status = state.status.value
    if state.status is RunStatus.COMPLETED:
        output = run_output(state)
        size = json_size(output)
        if size is None or size > CHILD_OUTPUT_MAX_BYTES:
            status = RunStatus.FAILED.value
            output = None
            error = (
                f"the child's output is {size if size is not None else 'not encodable, or'} "
                f"bytes, and a subworkflow node's output may take at most "
                f"{CHILD_OUTPUT_MAX_BYTES}: make its sinks' outputs smaller (each over 16 KB "
                "is listed by its CAS reference)"
            )
    else:
        error = state.reason or state.status.value.lower()
    payload = SubworkflowFinishedPayload(
        node_id=parent.node_id,
        attempt=parent.attempt,
        child_run_id=state.run_id,
        status=status,
        output=output,
        error=capped(error) if error is not None else None,
    )
    return to_run(
        SubworkflowFinished,
        payload,
        cause,
        "tell_parent",
        parent.run_id,
        tenant=state.tenant,
        now=now,
    )


def cancel_children(
    state: RunState, children: dict[str, str], cause: Event, now: datetime
) -> list[RunCancelRequested]:
    """A cancel for each of ``children`` (node -> child run) of a run that ended without
    completing."""
    how = "was cancelled" if state.status is RunStatus.CANCELLED else "failed"
    reason = f"its parent run {state.run_id} {how}"
    return [
        to_run(
            RunCancelRequested,
            RunCancelRequestedPayload(reason=capped(reason)),
            cause,
            "cancel_child",
            child,
            tenant=state.tenant,
            now=now,
        )
        for _, child in sorted(children.items())
    ]
