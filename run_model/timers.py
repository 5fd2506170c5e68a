"""The moments a run waits for: planned retries, attempt deadlines and approval limits.

Both are read off the run's facts, never kept as separate mutable state: a retry is due when
a NodeRetryPlanned says so and that attempt is not scheduled yet; an attempt's deadline is
when a worker first reported it started, plus its time limit (the node's ``timeout_s``, else
the default) plus a grace that lets the worker's own timeout report first, with its clearer
reason; a hitl node's approval is due when its request says (ApprovalRequested.due_at), and
then takes its default outcome; a wait_event node's wait is due when its EventAwaited says,
and then takes its ``timeout`` edge. An attempt that is scheduled but not started has no
deadline: its task waits in Kafka until a worker of its type takes it, however long the
queue.

The adapter (``processors.ticker``) turns a timer that is due into a ``TimerFired`` event on
the run's stream; the decider acts on it like on any other event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from run_model.mapping import item_timeout_s
from run_model.state import NodeState, NodeStatus, RunState
from schemas.envelope import build_event, deterministic_id, system_actor
from schemas.events import TimerFired, TimerFiredPayload
from schemas.workflow import DEFAULT_TIMEOUT_S

TIMER_COMPONENT = "coordinator-timer"
TimerKind = Literal["retry", "timeout", "approval", "event"]


@dataclass(frozen=True)
class Timer:
    kind: TimerKind
    node_id: str
    attempt: int
    due_at: datetime
    timeout_s: float | None = None
    item: int | None = None  # a map node's item (``run_model.mapping``)


def pending_timers(state: RunState, grace_s: float) -> list[Timer]:
    """Every timer of ``state`` that has not done its work yet, earliest first."""
    if state.finished:
        return []
    out: list[Timer] = []
    for node_id, node in state.nodes.items():
        if node.terminal:
            continue
        if node.map_items is not None:  # a map node's own timers are its items'
            timeout_s = item_timeout_s(state, node_id)
            for index, item in node.items.items():
                if not item.terminal:
                    out.extend(_attempt_timers(node_id, item, timeout_s, grace_s, index))
            continue
        out.extend(_attempt_timers(node_id, node, state.node_def(node_id).timeout_s, grace_s))
    return sorted(out, key=lambda t: t.due_at)


def _attempt_timers(
    node_id: str, node: NodeState, timeout_s: float | None, grace_s: float, item: int | None = None
) -> list[Timer]:
    """The timers of one node (or one item of a map node) that has not finished."""
    out = []
    for attempt, due in node.retry_due.items():
        if attempt not in node.scheduled:
            out.append(Timer("retry", node_id, attempt, due, item=item))
    approval = node.approval
    if (
        node.status is NodeStatus.WAITING
        and approval is not None
        and approval.decision is None
        and approval.due_at is not None
    ):
        out.append(Timer("approval", node_id, approval.attempt, approval.due_at, item=item))
    waits = node.awaiting
    if node.status is NodeStatus.WAITING and waits is not None and waits.due_at is not None:
        out.append(Timer("event", node_id, waits.attempt, waits.due_at, item=item))
    attempt = node.attempt
    started_at = node.started_at.get(attempt)
    if (
        node.status in (NodeStatus.SCHEDULED, NodeStatus.RUNNING)
        and started_at is not None
        and attempt not in node.failures
    ):
        limit = (timeout_s or DEFAULT_TIMEOUT_S) + grace_s
        due_at = started_at + timedelta(seconds=limit)
        out.append(Timer("timeout", node_id, attempt, due_at, limit, item=item))
    return out


def timer_fired(run_id: str, tenant: str, timer: Timer, now: datetime) -> TimerFired:
    """The event that says ``timer`` is due. Its id depends on the timer alone, so firing
    one timer twice (a restart, a slow loop) appends one fact that consumers see once."""
    payload = TimerFiredPayload(
        kind=timer.kind,
        node_id=timer.node_id,
        attempt=timer.attempt,
        due_at=timer.due_at,
        timeout_s=timer.timeout_s,
        item=timer.item,
    )
    # A node's timer keeps the id it always had; an item's names its index too.
    item = () if timer.item is None else (str(timer.item),)
    return build_event(
        TimerFired,
        payload,
        event_id=deterministic_id(
            run_id, "timer", timer.kind, timer.node_id, str(timer.attempt), *item
        ),
        aggregate_id=run_id,
        occurred_at=now,
        actor=system_actor(TIMER_COMPONENT, tenant),
    )
