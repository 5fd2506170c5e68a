"""``hitl``: ask a person. The prompt is rendered and ApprovalRequested is appended; the node
then WAITS, outside any worker, until the coordinator accepts a decision
(``POST /v1/runs/{run}/approvals/{node}``) or the node's ``timeout_s`` passes and
``config.default_outcome`` (``rejected`` if absent) is taken.

Config: ``prompt`` (template, required), ``default_outcome`` (``approved`` | ``rejected``).
The node's ``timeout_s`` is how long the approval may wait; without it, it waits until
decided or cancelled. The node's output is ``{decision, comment, decided_by, timed_out}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aob import Job, node
from schemas import reports
from schemas.envelope import utcnow
from schemas.events import ApprovalRequested, ApprovalRequestedPayload
from templating import renders
from workers.errors import ConfigError
from workers.handlers.base import WAITING

OUTCOMES = ("approved", "rejected")


# Its prompt is rendered here, once, as the approval's text: the SDK leaves it as written.
@node("hitl", render_config=False)
async def hitl(job: Job[Any]) -> Any:
    """Asks a person to approve or reject, with its config's `prompt` rendered; waits."""
    prompt = job.config.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("hitl config needs 'prompt', a non-empty template string")
    default = job.config.get("default_outcome", "rejected")
    if default not in OUTCOMES:
        raise ConfigError(f"hitl 'default_outcome' must be one of {OUTCOMES}, not {default!r}")
    text = await renders.render_string(prompt, job.template_context)
    task = job.task
    now = utcnow()
    limit = task.timeout_s
    payload = ApprovalRequestedPayload(
        node_id=task.node_id,
        attempt=task.attempt,
        prompt=text,
        timeout_s=limit,
        default_outcome=default if limit else None,
        due_at=now + timedelta(seconds=limit) if limit else None,
    )
    await job.emit(reports.report(ApprovalRequested, task, payload, "approval_requested", at=now))
    return WAITING
