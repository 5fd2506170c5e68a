"""Admission of the commands that start work: runs by their workflow's cost tier, and a
person's forks, patches and approvals, each under limits of its own.

A route calls these after it has validated the command (a malformed or unknown one must not
use up a tenant's minute) and before it appends; inside ``command_api.idempotency.once``, so
that a replayed request is not counted again. A refusal is a 429 (``RateLimited``) whose
problem body names the limit, its numbers and the wait, which is also ``Retry-After``::

    {"detail": "tenant acme: tier agentic allows 20 submissions a minute; retry in 3 s",
     "limit": {"name": "tier:agentic", "per_minute": 20, "retry_after_s": 3}, ...}

The check itself, exact across processes, is ``limits.admission_check``'s; the tenant's
limits are ``ctx.limits``'s (read from PostgreSQL, remembered for a second).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from command_api.errors import RateLimited
from limits.admission_check import Action, Limit, action_limits, submission_limits
from limits.cost_tier import cost_tier

if TYPE_CHECKING:
    from run_submission.context import SubmissionContext


async def admit_run(ctx: SubmissionContext, tenant: str, definition: Mapping[str, Any]) -> None:
    """Admit a run of ``definition`` (its version's JSON form), or raise ``RateLimited``."""
    admission = (await ctx.limits.get(tenant)).admission
    tier = cost_tier(definition, admission.tiers)
    global_limit = ctx.settings.global_submissions_per_minute
    await _admit(ctx, submission_limits(tenant, admission, tier, global_limit))


async def admit_action(ctx: SubmissionContext, tenant: str, action: Action) -> None:
    """Admit a person's fork, patch or approval, or raise ``RateLimited``."""
    admission = (await ctx.limits.get(tenant)).admission
    await _admit(ctx, action_limits(tenant, admission, action))


async def _admit(ctx: SubmissionContext, limits: list[Limit]) -> None:
    refusal = await ctx.admissions.admit(limits)
    if refusal is not None:
        raise RateLimited(refusal.detail, refusal.retry_after_s, limit=refusal.as_json())
