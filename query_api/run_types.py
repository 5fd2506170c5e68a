"""Runs as GraphQL gives them (``run``, ``runs``, ``runUpdated``), with what hangs off a run:
its nodes, events, patches, versions, approvals, usage and forks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api import db, fork_queries
from query_api.approval_types import Approval
from query_api.context import ReadContext
from query_api.event_types import EVENT_PAGES, EventConnection
from query_api.node_types import Node, TokenUsage
from query_api.pagination import Key, Keyset, PageInfo, Pages, datetime_key, str_key
from query_api.patch_types import Patch, RunVersion
from query_api.rows import from_row
from query_api.statuses import RunStatus


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

    @staticmethod
    def of(r: Any) -> Run:
        """A ``runs`` row."""
        return from_row(Run, r, id=r["run_id"], status=RunStatus(r["status"]))

    @strawberry.field
    async def nodes(self, info: Info[ReadContext, None]) -> list[Node]:
        return await info.context.nodes.load(self.id)

    @strawberry.field(description="Patches proposed to this run, in log order.")
    async def patches(self, info: Info[ReadContext, None]) -> list[Patch]:
        return await info.context.patches.load(self.id)

    @strawberry.field(
        description="The run's chain of versions: the submitted one (seq 0), then one per "
        "applied patch."
    )
    async def versions(self, info: Info[ReadContext, None]) -> list[RunVersion]:
        return await info.context.versions.load(self.id)

    @strawberry.field(description="Approvals of this run's hitl nodes, in request order.")
    async def approvals(self, info: Info[ReadContext, None]) -> list[Approval]:
        return [Approval.of(r) for r in await db.approvals_of_run(info.context.pool, self.id)]

    @strawberry.field(description="Token usage summed over the run's nodes.")
    async def usage(self, info: Info[ReadContext, None]) -> TokenUsage:
        return TokenUsage.of(await info.context.nodes.load(self.id))

    @strawberry.field(description="Where this run was forked from; null if it is not a fork.")
    async def forked_from(self, info: Info[ReadContext, None]) -> ForkOrigin | None:
        row = await fork_queries.origin(info.context.pool, info.context.tenant, self.id)
        if row is None:
            return None
        return ForkOrigin(
            run_id=row["forked_from"], position=row["forked_at"], seq=row["forked_at_seq"]
        )

    @strawberry.field(description="Runs forked from this one, oldest first.")
    async def forks(self, info: Info[ReadContext, None]) -> list[Run]:
        rows = await fork_queries.forks_of(info.context.pool, info.context.tenant, self.id)
        return [Run.of(r) for r in rows]

    @strawberry.field(description="The run's events in log order.")
    async def events(
        self, info: Info[ReadContext, None], first: int = 100, after: str | None = None
    ) -> EventConnection:
        async def fetch(limit: int, key: Key | None) -> list[Any]:
            (after_seq,) = key or (0,)
            return await db.events_page(info.context.pool, self.id, limit, after_seq)

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
