"""The events a worker appends about a task: pure functions of the task and the outcome.

Ids are deterministic (task id + outcome), so a task delivered twice reports the same events
and every consumer drops the second copy.
"""

from __future__ import annotations

from typing import Any

from schemas.envelope import deterministic_id, system_actor
from schemas.events import (
    INLINE_OUTPUT_MAX_BYTES,
    NodeFailed,
    NodeFailedPayload,
    NodeStarted,
    NodeStartedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
)
from schemas.tasks import NodeTask

MAX_ERROR_CHARS = 4000  # a reason is for a person or a model to read, not a dump


def envelope(task: NodeTask, *outcome: str) -> dict[str, Any]:
    """The envelope fields of an event about ``task``: its id depends on the task and
    ``outcome`` only, so a task delivered twice reports the same facts."""
    return {
        "event_id": deterministic_id(task.task_id, *outcome),
        "aggregate_id": task.run_id,
        "correlation_id": task.run_id,
        "causation_id": task.task_id,
        "actor": system_actor(f"worker:{task.node_type}", tenant=task.tenant),
    }


def started(task: NodeTask, worker: str) -> NodeStarted:
    return NodeStarted(
        **envelope(task, "started"),
        payload=NodeStartedPayload(node_id=task.node_id, attempt=task.attempt, worker=worker),
    )


def inline(output_size: int) -> bool:
    """Whether an output of ``output_size`` bytes travels in its event (else in the CAS)."""
    return output_size <= INLINE_OUTPUT_MAX_BYTES


def succeeded(
    task: NodeTask, output: Any, output_ref: str | None, output_size: int
) -> NodeSucceeded:
    """The success report: a small output inline (no ref), a large one by its CAS ref."""
    small = inline(output_size)
    return NodeSucceeded(
        **envelope(task, "succeeded"),
        payload=NodeSucceededPayload(
            node_id=task.node_id,
            attempt=task.attempt,
            output=output if small else None,
            output_inline=small,
            output_ref=None if small else output_ref,
            output_size=output_size,
        ),
    )


def failed(task: NodeTask, reason: str, *, retryable: bool) -> NodeFailed:
    """``reason`` should already name the node (``node_reason`` does)."""
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[: MAX_ERROR_CHARS - 1] + "…"
    return NodeFailed(
        **envelope(task, "failed"),
        payload=NodeFailedPayload(
            node_id=task.node_id, attempt=task.attempt, error=reason, retryable=retryable
        ),
    )


def node_reason(task: NodeTask, what: str) -> str:
    return f"node {task.node_id!r} ({task.node_type}, attempt {task.attempt}): {what}"
