"""The events a worker appends about a task: pure functions of the task and the outcome.

Part of the task contract (DESIGN.md: the task topic is what any worker speaks), which is why
it lives beside ``schemas.tasks``: the built-in workers use it, and so do the decider's test
helpers (``run_model.testing``), so a simulated worker reports exactly as a real one does.

Ids are deterministic (task id + outcome), so a task delivered twice reports the same events
and every consumer drops the second copy.

A failure's reason often quotes a stranger (an exception raised on a hostile response, a
model's words), so every reason passes ``reason_text`` here, the one place that makes it
fit to store: characters no value may hold replaced (``schemas.values.writable``; a NUL or a
lone surrogate would make the NodeFailed itself unencodable or unwritable to PostgreSQL), and
cut to ``MAX_ERROR_CHARS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from schemas.envelope import Event, Payload, build_event, deterministic_id, system_actor
from schemas.events import (
    INLINE_OUTPUT_MAX_BYTES,
    NodeFailed,
    NodeFailedPayload,
    NodeProgress,
    NodeProgressPayload,
    NodeQueued,
    NodeQueuedPayload,
    NodeStarted,
    NodeStartedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
    WaitingFor,
)
from schemas.tasks import NodeTask
from schemas.values import writable

MAX_ERROR_CHARS = 4000  # a reason is for a person or a model to read, not a dump

ReportT = TypeVar("ReportT", bound=Event)


def report(
    kind: type[ReportT],
    task: NodeTask,
    payload: Payload,
    *outcome: str,
    at: datetime | None = None,
) -> ReportT:
    """An event about ``task``: its id depends on the task and ``outcome`` only, so a task
    delivered twice reports the same facts. ``at`` is when (now if not given)."""
    return build_event(
        kind,
        payload,
        event_id=deterministic_id(task.task_id, *outcome),
        aggregate_id=task.run_id,
        causation_id=task.task_id,
        actor=system_actor(f"worker:{task.node_type}", tenant=task.tenant),
        occurred_at=at,
    )


def started(task: NodeTask, worker: str, *, at: datetime | None = None) -> NodeStarted:
    payload = NodeStartedPayload(
        node_id=task.node_id, attempt=task.attempt, worker=worker, item=task.index
    )
    return report(NodeStarted, task, payload, "started", at=at)


def queued(
    task: NodeTask, worker: str, waiting_for: WaitingFor, reason: str, *, at: datetime | None = None
) -> NodeQueued:
    """The task waits in ``worker`` for a limit. One id per attempt and kind of limit: a
    task delivered again, or held back again for the same limit, tells it once."""
    payload = NodeQueuedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        waiting_for=waiting_for,
        reason=reason_text(reason),
        worker=worker,
        item=task.index,
    )
    return report(NodeQueued, task, payload, "queued", waiting_for, at=at)


# A progress message is for a person watching the run: a line or a paragraph, not a log.
MAX_PROGRESS_CHARS = 1000


def progress(
    task: NodeTask,
    seq: int,
    message: str,
    fraction: float | None = None,
    *,
    at: datetime | None = None,
) -> NodeProgress:
    """The attempt's ``seq``-th progress report (1 for the first): a task delivered again
    reports its progress under the same ids, so every consumer keeps one copy of each."""
    payload = NodeProgressPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        seq=seq,
        message=reason_text(message)[:MAX_PROGRESS_CHARS],
        fraction=fraction,
    )
    return report(NodeProgress, task, payload, "progress", str(seq), at=at)


def inline(output_size: int) -> bool:
    """Whether an output of ``output_size`` bytes travels in its event (else in the CAS)."""
    return output_size <= INLINE_OUTPUT_MAX_BYTES


def succeeded(
    task: NodeTask,
    output: Any,
    output_ref: str | None,
    output_size: int,
    *,
    at: datetime | None = None,
) -> NodeSucceeded:
    """The success report: a small output inline (no ref), a large one by its CAS ref."""
    small = inline(output_size)
    payload = NodeSucceededPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        output=output if small else None,
        output_inline=small,
        output_ref=None if small else output_ref,
        output_size=output_size,
        item=task.index,
    )
    return report(NodeSucceeded, task, payload, "succeeded", at=at)


def failed(
    task: NodeTask, reason: str, *, retryable: bool, at: datetime | None = None
) -> NodeFailed:
    """``reason`` should already name the node (``node_reason`` does); it is stored as
    ``reason_text`` makes it."""
    payload = NodeFailedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        error=reason_text(reason),
        retryable=retryable,
        item=task.index,
    )
    return report(NodeFailed, task, payload, "failed", at=at)


def reason_text(reason: str) -> str:
    """``reason`` fit to store and read (the module doc says why): characters no value may
    hold replaced, cut to ``MAX_ERROR_CHARS`` with an ellipsis."""
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[: MAX_ERROR_CHARS - 1] + "…"
    return writable(reason)


def node_reason(task: NodeTask, what: str) -> str:
    item = f", item {task.index}" if task.index is not None else ""
    return f"node {task.node_id!r} ({task.node_type}{item}, attempt {task.attempt}): {what}"
