"""Approvals of hitl nodes as GraphQL gives them (``Run.approvals``, ``pendingApprovals``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import strawberry

from query_api.pagination import Keyset, PageInfo, Pages, datetime_key, str_key
from query_api.rows import from_row


@strawberry.type
class ApprovalRefusal:
    decision: str
    reason: str
    at: datetime
    submission_id: str


@strawberry.type(
    description="A request for a person's decision, and the decision: a hitl node's, or an "
    "agent node's whose next model call would pass the run's budget."
)
class Approval:
    run_id: strawberry.ID
    node_id: str
    attempt: int
    status: str = strawberry.field(description="WAITING APPROVED REJECTED CANCELLED")
    kind: str = strawberry.field(
        description="DECISION: a hitl node's. BUDGET: an agent node waits on the run's "
        "budget; approving it with a higher `budget` lets it go on, in a new attempt."
    )
    reason: str | None = strawberry.field(
        description="BUDGET: what the node's next call would pass (`budget exceeded: N of M "
        "tokens; …`)."
    )
    prompt: str
    requested_at: datetime
    due_at: datetime | None = strawberry.field(
        description="When the default outcome is taken, if the node has a time limit."
    )
    default_outcome: str | None
    decision: str | None
    comment: str | None
    decided_by: str | None = strawberry.field(
        description="The approver's API key id, or `timeout` when the default was taken."
    )
    decided_at: datetime | None
    timed_out: bool
    refusals: list[ApprovalRefusal] = strawberry.field(
        description="Decisions the coordinator refused for this node, with the reason."
    )

    @staticmethod
    def of(r: Any) -> Approval:
        """An ``approvals`` row."""
        refusals = r["refusals"]
        if isinstance(refusals, str):  # asyncpg hands jsonb over as its text
            refusals = json.loads(refusals)
        return from_row(
            Approval,
            r,
            refusals=[
                from_row(ApprovalRefusal, x, at=datetime.fromisoformat(x["at"])) for x in refusals
            ],
        )


@strawberry.type
class ApprovalEdge:
    cursor: str
    node: Approval


@strawberry.type
class ApprovalConnection:
    edges: list[ApprovalEdge]
    page_info: PageInfo


# Oldest request first.
APPROVAL_PAGES = Pages(
    ApprovalConnection,
    ApprovalEdge,
    Approval.of,
    Keyset((("requested_at", datetime_key), ("run_id", str_key), ("node_id", str_key))),
)
