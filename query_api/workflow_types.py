"""Workflows as GraphQL gives them (``workflow``, ``workflows``), with their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api import db
from query_api.context import ReadContext
from query_api.pagination import MAX_PAGE, Keyset, PageInfo, Pages, page_size, str_key
from query_api.rows import from_row


@strawberry.type
class WorkflowVersion:
    version: str
    definition: JSON
    published_at: datetime


@strawberry.type
class Workflow:
    id: strawberry.ID
    name: str
    latest_version: str
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def of(r: Any) -> Workflow:
        """A ``workflows`` row."""
        return from_row(Workflow, r, id=r["workflow_id"])

    @strawberry.field(description="Published versions, oldest first.")
    async def versions(
        self,
        info: Info[ReadContext, None],
        first: Annotated[
            int,
            strawberry.argument(description="How many to return, at most (1 to 500)."),
        ] = MAX_PAGE,
    ) -> list[WorkflowVersion]:
        rows = await db.versions_of(
            info.context.pool, info.context.tenant, self.id, page_size(first)
        )
        return [from_row(WorkflowVersion, r) for r in rows]


@strawberry.type
class WorkflowEdge:
    cursor: str
    node: Workflow


@strawberry.type
class WorkflowConnection:
    edges: list[WorkflowEdge]
    page_info: PageInfo


# By name, then id.
WORKFLOW_PAGES = Pages(
    WorkflowConnection,
    WorkflowEdge,
    Workflow.of,
    Keyset((("name", str_key), ("workflow_id", str_key))),
)
