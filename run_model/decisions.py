"""The events of decisions, and the refusals taken without the decider.

``decided`` is the one place where a decision's id is derived from its cause, so that the
same decision about the same event has the same id wherever and whenever it is taken: in
``step``, again after a crash, about a run that had finished (``refuse_after_finish``), or
when a run is failed because nothing could be decided (``run_model.abort``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from run_model.limits import PATCH_REASON_MAX_CHARS, capped, patch_refusal
from run_model.state import RunStatus
from schemas.envelope import Event, EventT, Payload, build_event, deterministic_id, system_actor
from schemas.events import (
    ApprovalRefused,
    ApprovalRefusedPayload,
    ApprovalSubmitted,
    PatchRejected,
    PatchSubmitted,
)

COMPONENT = "coordinator"


def decided(
    kind: type[EventT],
    payload: Payload,
    cause: Event,
    decision: str,
    *,
    tenant: str,
    now: datetime,
    node_id: str = "",
    attempt: int = 0,
) -> EventT:
    """The event of a decision about ``cause`` (an event of the run): the one place where a
    decision's id is derived, from the cause and the decision (its name, and the node and
    attempt it is about), so the same decision about the same event has the same id
    wherever and whenever it is taken: in ``step``, again after a crash, or about a run
    that had finished (``refuse_after_finish``)."""
    return build_event(
        kind,
        payload,
        event_id=deterministic_id(cause.event_id, decision, node_id, str(attempt)),
        aggregate_id=cause.aggregate_id,
        causation_id=cause.event_id,
        occurred_at=now,
        actor=system_actor(COMPONENT, tenant),
    )


def patch_rejected(
    cause: PatchSubmitted,
    reasons: list[str],
    *,
    tenant: str,
    now: datetime,
    current_version: str | None = None,
    current_definition: dict[str, Any] | None = None,
) -> PatchRejected:
    """The refusal of ``cause``, cut to fit in an event (``run_model.limits.patch_refusal``)."""
    payload = patch_refusal(cause.event_id, reasons, current_version, current_definition)
    return decided(PatchRejected, payload, cause, "reject_patch", tenant=tenant, now=now)


def decision_refused(
    cause: ApprovalSubmitted, reason: str, *, tenant: str, now: datetime
) -> ApprovalRefused:
    p = cause.payload
    payload = ApprovalRefusedPayload(
        node_id=capped(p.node_id, PATCH_REASON_MAX_CHARS),  # a node the run has is far shorter
        decision=p.decision,
        submission_id=cause.event_id,
        reason=capped(reason),
    )
    return decided(
        ApprovalRefused,
        payload,
        cause,
        "refuse_decision",
        tenant=tenant,
        now=now,
        node_id=p.node_id,
    )


def refuse_after_finish(
    event: ApprovalSubmitted | PatchSubmitted, status: RunStatus, now: datetime
) -> ApprovalRefused | PatchRejected:
    """A decision or a patch that reached a finished run (only its status is kept): refused,
    so that whoever sent it learns why it changed nothing. Same id as a refusal ``step``
    would decide."""
    tenant = event.actor.tenant
    if isinstance(event, PatchSubmitted):
        reasons = [f"the run is {status.value}: it takes no more patches"]
        return patch_rejected(event, reasons, tenant=tenant, now=now)
    reason = f"the run is {status.value}: it takes no more decisions"
    return decision_refused(event, reason, tenant=tenant, now=now)
