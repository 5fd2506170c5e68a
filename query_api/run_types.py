"""Runs as GraphQL gives them (``run``, ``runs``, ``runUpdated``), with what hangs off a run:
its nodes, events, patches, versions, approvals, usage and forks."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api import db, fork_queries, subworkflow_queries
from query_api.approval_types import Approval
from query_api.context import ReadContext
from query_api.event_types import EVENT_PAGES, EventConnection
from query_api.node_types import MAX_ITEMS_PAGE, Budget, MapItem, Node, Spend, TokenUsage
from query_api.pagination import (
    MAX_PAGE,
    Key,
    Keyset,
    PageInfo,
    Pages,
    datetime_key,
    page_size,
    str_key,
)
from query_api.patch_types import Patch, RunVersion
from query_api.rows import from_row
from query_api.statuses import RunStatus
from schemas.workflow import MAX_NODES

# A list that was returned whole takes ``first`` (1..MAX_PAGE), whose default is the most it
# could hold before, so every query that worked still gets everything.
FIRST = "How many to return, at most (1 to 500); the rest are left out."


@strawberry.type
class Run:
    id: strawberry.ID
    status: RunStatus
    workflow_id: strawberry.ID
    workflow_name: str
    version: str = strawberry.field(description="The current version (a patch moves it on).")
    input: JSON | None
    output: JSON | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    projection_error: str | None = strawberry.field(
        default=None,
        description="Why an event of this run is missing from the read model, if one is: "
        "PostgreSQL refused it, so it was set aside and the read model went on. The log "
        "still has the event; `aob replay projections` rebuilds it once the cause is fixed.",
    )
    budget_row: strawberry.Private[Any] = None
    parent_node_id: str | None = strawberry.field(
        default=None,
        description="The subworkflow node of `parent` that started this run; null for a run "
        "started otherwise.",
    )
    depth: int = strawberry.field(
        default=0, description="How deep in subworkflows the run is: 0 unless it has a parent."
    )
    parent_run_id: strawberry.Private[str | None] = None

    @staticmethod
    def of(r: Any) -> Run:
        """A ``runs`` row."""
        return from_row(
            Run,
            r,
            id=r["run_id"],
            status=RunStatus(r["status"]),
            budget_row=r.get("budget"),
            parent_run_id=r.get("parent_run_id"),
            parent_node_id=r.get("parent_node_id"),
            depth=r.get("depth") or 0,
        )

    @strawberry.field(description="The run's nodes in scheduling order (a run has at most 500).")
    async def nodes(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_NODES,
    ) -> list[Node]:
        limit = page_size(first)  # refused before anything is read
        return (await info.context.nodes.load(self.id))[:limit]

    @strawberry.field(description="Patches proposed to this run, in log order.")
    async def patches(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_PAGE,
    ) -> list[Patch]:
        limit = page_size(first)  # refused before anything is read
        return (await info.context.patches.load(self.id))[:limit]

    @strawberry.field(
        description="The run's chain of versions: the submitted one (seq 0), then one per "
        "applied patch."
    )
    async def versions(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_PAGE,
    ) -> list[RunVersion]:
        limit = page_size(first)  # refused before anything is read
        return (await info.context.versions.load(self.id))[:limit]

    @strawberry.field(
        description="The items of the run's map node `node` in index order (those scheduled "
        f"so far), from `offset`, at most `first` (up to {MAX_ITEMS_PAGE}): the same as that "
        "node's `items`, without paying for every node's list. Empty for a node that is no map."
    )
    async def map_items(
        self, info: Info[ReadContext, None], node: str, first: int = 100, offset: int = 0
    ) -> list[MapItem]:
        for row in await info.context.nodes.load(self.id):
            if row.id == node:
                return row.items(first=min(first, MAX_ITEMS_PAGE), offset=offset) or []
        return []

    @strawberry.field(description="Approvals of this run's hitl nodes, in request order.")
    async def approvals(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_PAGE,
    ) -> list[Approval]:
        limit = page_size(first)  # refused before anything is read
        return (await info.context.approvals.load(self.id))[:limit]

    @strawberry.field(description="Token usage summed over the run's nodes.")
    async def usage(self, info: Info[ReadContext, None]) -> TokenUsage:
        return TokenUsage.of(await info.context.nodes.load(self.id))

    @strawberry.field(
        description="What the run's agents spent (tokens, and US dollars as priced), every "
        "model call counted, failed attempts too."
    )
    async def spend(self, info: Info[ReadContext, None]) -> Spend:
        return Spend.of(await info.context.nodes.load(self.id))

    @strawberry.field(
        description="The run's budget as it stands (raised by approvals); null: no bound."
    )
    def budget(self) -> Budget | None:
        row = self.budget_row
        if isinstance(row, str):  # asyncpg hands jsonb over as its text
            row = json.loads(row)
        if not isinstance(row, dict):
            return None
        return Budget(
            tokens=row.get("tokens"), usd=row.get("usd"), on_exceed=row.get("on_exceed", "fail")
        )

    @strawberry.field(description="Where this run was forked from; null if it is not a fork.")
    async def forked_from(self, info: Info[ReadContext, None]) -> ForkOrigin | None:
        row = await fork_queries.origin(info.context.pool, info.context.tenant, self.id)
        if row is None:
            return None
        return ForkOrigin(
            run_id=row["forked_from"], position=row["forked_at"], seq=row["forked_at_seq"]
        )

    @strawberry.field(description="Runs forked from this one, oldest first.")
    async def forks(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_PAGE,
    ) -> list[Run]:
        limit = page_size(first)
        rows = await fork_queries.forks_of(info.context.pool, info.context.tenant, self.id, limit)
        return [Run.of(r) for r in rows]

    @strawberry.field(
        description="The run whose subworkflow node (`parentNodeId`) started this one; null "
        "for a run started otherwise."
    )
    async def parent(self, info: Info[ReadContext, None]) -> Run | None:
        if self.parent_run_id is None:
            return None
        row = await db.run(info.context.pool, info.context.tenant, self.parent_run_id)
        return Run.of(row) if row else None

    @strawberry.field(
        description="The runs this run's subworkflow nodes started (one per node attempt), "
        "oldest first; each node names its own as `childRunId`."
    )
    async def children(
        self,
        info: Info[ReadContext, None],
        first: Annotated[int, strawberry.argument(description=FIRST)] = MAX_PAGE,
    ) -> list[Run]:
        limit = page_size(first)
        rows = await subworkflow_queries.children_of(
            info.context.pool, info.context.tenant, self.id, limit
        )
        return [Run.of(r) for r in rows]

    @strawberry.field(description="The run's events in log order.")
    async def events(
        self, info: Info[ReadContext, None], first: int = 100, after: str | None = None
    ) -> EventConnection:
        async def fetch(limit: int, key: Key | None) -> list[Any]:
            (after_seq,) = key or (0,)
            return await info.context.events.load((str(self.id), limit, after_seq))

        return await EVENT_PAGES.page(first, after, fetch)


@strawberry.type(description="Where a fork was made: the run, and the point of its history.")
class ForkOrigin:
    run_id: strawberry.ID = strawberry.field(description="The run forked from.")
    position: str = strawberry.field(
        description="Log position token of the source's last event the fork includes."
    )
    seq: int = strawberry.field(
        description="How many of the source's events the fork includes (its events' seq)."
    )

    @strawberry.field(description="The run forked from; null if it is not visible.")
    async def run(self, info: Info[ReadContext, None]) -> Run | None:
        row = await db.run(info.context.pool, info.context.tenant, str(self.run_id))
        return Run.of(row) if row else None


@strawberry.type
class RunEdge:
    cursor: str
    node: Run


@strawberry.type
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo


@strawberry.input
class RunFilter:
    status: RunStatus | None = None
    workflow_id: strawberry.ID | None = strawberry.field(
        default=None, description="Only runs of this workflow."
    )


# Newest first.
RUN_PAGES = Pages(
    RunConnection,
    RunEdge,
    Run.of,
    Keyset((("created_at", datetime_key), ("run_id", str_key))),
)
