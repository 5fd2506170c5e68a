"""The ``Query`` root: a workflow, workflows, a run, runs, pending approvals."""

from __future__ import annotations

from functools import partial
from typing import Any

import strawberry
from strawberry.types import Info

from query_api import db
from query_api.approval_types import APPROVAL_PAGES, ApprovalConnection
from query_api.context import ReadContext
from query_api.pagination import Key
from query_api.read_your_writes import parse_position, wait_for
from query_api.registered_types import NodeType, node_types
from query_api.run_types import RUN_PAGES, Run, RunConnection, RunFilter
from query_api.workflow_types import WORKFLOW_PAGES, Workflow, WorkflowConnection


@strawberry.type
class Query:
    @strawberry.field(description="A workflow by id; null if there is none for the caller.")
    async def workflow(self, info: Info[ReadContext, None], id: strawberry.ID) -> Workflow | None:
        row = await db.workflow(info.context.pool, info.context.tenant, str(id))
        return Workflow.of(row) if row else None

    @strawberry.field
    async def workflows(
        self, info: Info[ReadContext, None], first: int = 20, after: str | None = None
    ) -> WorkflowConnection:
        fetch = partial(db.workflows_page, info.context.pool, info.context.tenant)
        return await WORKFLOW_PAGES.page(first, after, fetch)

    @strawberry.field(
        description="A run. With `after` (a command's position), waits until the read side "
        "includes that write."
    )
    async def run(
        self, info: Info[ReadContext, None], id: strawberry.ID, after: str | None = None
    ) -> Run | None:
        ctx = info.context
        if after is not None:
            position = parse_position(after)
            await wait_for(
                ctx.pool,
                ctx.watcher,
                ctx.settings.projection,
                position,
                ctx.settings.catch_up_timeout_s,
            )
        row = await db.run(ctx.pool, ctx.tenant, str(id))
        return Run.of(row) if row else None

    @strawberry.field(description="Runs, newest first.")
    async def runs(
        self,
        info: Info[ReadContext, None],
        filter: RunFilter | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> RunConnection:
        async def fetch(limit: int, key: Key | None) -> list[Any]:
            return await db.runs_page(
                info.context.pool,
                info.context.tenant,
                limit=limit,
                after=key,
                status=filter.status.value if filter and filter.status else None,
                workflow_id=filter.workflow_id if filter else None,
            )

        return await RUN_PAGES.page(first, after, fetch)

    @strawberry.field(
        description="Approvals waiting for a decision across the caller's runs, oldest first."
    )
    async def pending_approvals(
        self, info: Info[ReadContext, None], first: int = 50, after: str | None = None
    ) -> ApprovalConnection:
        fetch = partial(db.pending_approvals, info.context.pool, info.context.tenant)
        return await APPROVAL_PAGES.page(first, after, fetch)

    @strawberry.field(
        description="The node types the caller's workflows may use: the built-in ones, then "
        "the tenant's registered ones by name, each with its schemas and live workers."
    )
    async def node_types(self, info: Info[ReadContext, None]) -> list[NodeType]:
        return await node_types(info.context.pool, info.context.tenant)
