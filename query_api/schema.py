"""The GraphQL schema (API.md): workflows, runs, nodes, events. camelCase on the wire."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.dataloader import DataLoader
from strawberry.extensions import MaskErrors
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext, Info

from cas import CasError
from query_api import db, fork_queries, live
from query_api.context import ReadContext
from query_api.cursors import decode_cursor, encode_cursor
from query_api.errors import BadCursor, PageSizeOutOfRange, QueryApiError
from query_api.limits import extensions
from query_api.patch_types import Patch, RunVersion
from query_api.read_your_writes import parse_position, wait_for
from schemas.position import Position
from schemas.topics import RUN_EVENTS

MAX_PAGE = 500


@strawberry.enum
class RunStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class NodeStatus(Enum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


def _page_size(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise PageSizeOutOfRange(f"first must be between 1 and {MAX_PAGE}, not {first}")
    return first


def _int_key(value: Any) -> int:
    if not isinstance(value, int):
        raise BadCursor("cursor is not one this API issued")
    return value


def _datetime_key(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as e:
        raise BadCursor("cursor is not one this API issued") from e
    if moment.tzinfo is None:
        raise BadCursor("cursor is not one this API issued")
    return moment


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None

    @staticmethod
    def after(edges: Sequence[Any], more: bool) -> PageInfo:
        """The page info of a page of ``edges`` (each with a ``cursor``)."""
        return PageInfo(has_next_page=more, end_cursor=edges[-1].cursor if edges else None)


@strawberry.type(description="Tokens an agent's model calls used (failed attempts too).")
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int = strawberry.field(description="Prompt tokens the provider had cached.")

    @staticmethod
    def of(rows: Sequence[Any]) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            total_tokens=sum(r.total_tokens for r in rows),
            cached_tokens=sum(r.cached_tokens for r in rows),
        )


# "NodeExecution", not "Node": Relay reserves the type name Node for its object interface.
@strawberry.type(name="NodeExecution")
class Node:
    id: str
    type: str
    status: NodeStatus
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    output_ref: str | None
    error: str | None
    inline_output: strawberry.Private[Any]
    prompt_tokens: strawberry.Private[int] = 0
    completion_tokens: strawberry.Private[int] = 0
    total_tokens: strawberry.Private[int] = 0
    cached_tokens: strawberry.Private[int] = 0

    @strawberry.field(description="Token usage of this node's model calls (agent nodes).")
    def usage(self) -> TokenUsage:
        return TokenUsage.of([self])

    @strawberry.field(description="The output; fetched from the CAS when it is not inline.")
    async def output(self, info: Info[ReadContext, None]) -> JSON | None:
        if self.inline_output is not None or self.output_ref is None:
            return self.inline_output
        return await info.context.cas.get_json(self.output_ref)


@strawberry.type(
    description="One of a run's events, with what the read model made of it: the run's "
    "status after it, and the status of the node it is about."
)
class Event:
    id: strawberry.ID
    seq: int = strawberry.field(description="1, 2, … : the run's distinct events in log order.")
    position: str = strawberry.field(
        description="Where the log holds it (`topic:partition:offset`), as `--at` takes it."
    )
    type: str
    occurred_at: datetime
    causation_id: str | None
    actor: JSON
    payload: JSON
    run_status: RunStatus | None = strawberry.field(
        description="The run's status after this event (null if projected by an older release)."
    )
    node_id: str | None = strawberry.field(description="The node the event is about, if any.")
    node_status: NodeStatus | None = strawberry.field(
        description="That node's status after this event."
    )

    @staticmethod
    def of(r: Any) -> Event:
        return Event(
            id=r["event_id"],
            seq=r["seq"],
            position=Position(RUN_EVENTS, r["kafka_partition"], r["kafka_offset"]).token(),
            type=r["type"],
            occurred_at=r["occurred_at"],
            causation_id=r["causation_id"],
            actor=r["actor"],
            payload=r["payload"],
            run_status=RunStatus(r["run_status"]) if r["run_status"] else None,
            node_id=r["node_id"],
            node_status=NodeStatus(r["node_status"]) if r["node_status"] else None,
        )


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


def _event_edge(r: Any) -> EventEdge:
    """A ``run_events`` row as ``Run.events`` and ``runEvents`` give it."""
    return EventEdge(cursor=encode_cursor(r["seq"]), node=Event.of(r))


@strawberry.type
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo


@strawberry.type
class ApprovalRefusal:
    decision: str
    reason: str
    at: datetime
    submission_id: str


@strawberry.type(description="A hitl node's request for a decision, and the decision.")
class Approval:
    run_id: strawberry.ID
    node_id: str
    attempt: int
    status: str = strawberry.field(description="WAITING APPROVED REJECTED CANCELLED")
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
        refusals = r["refusals"]
        if isinstance(refusals, str):  # asyncpg hands jsonb over as its text
            refusals = json.loads(refusals)
        return Approval(
            run_id=r["run_id"],
            node_id=r["node_id"],
            attempt=r["attempt"],
            status=r["status"],
            prompt=r["prompt"],
            requested_at=r["requested_at"],
            due_at=r["due_at"],
            default_outcome=r["default_outcome"],
            decision=r["decision"],
            comment=r["comment"],
            decided_by=r["decided_by"],
            decided_at=r["decided_at"],
            timed_out=r["timed_out"],
            refusals=[
                ApprovalRefusal(
                    decision=x["decision"],
                    reason=x["reason"],
                    at=datetime.fromisoformat(x["at"]),
                    submission_id=x["submission_id"],
                )
                for x in refusals
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
        return [_run(r) for r in rows]

    @strawberry.field(description="The run's events in log order.")
    async def events(
        self, info: Info[ReadContext, None], first: int = 100, after: str | None = None
    ) -> EventConnection:
        limit = _page_size(first)
        after_seq = _int_key(decode_cursor(after, 1)[0]) if after else 0
        rows = await db.events_page(info.context.pool, self.id, limit + 1, after_seq)
        edges = [_event_edge(r) for r in rows[:limit]]
        return EventConnection(
            edges=edges,
            page_info=PageInfo.after(edges, more=len(rows) > limit),
        )


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
        return _run(row) if row else None


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

    @strawberry.field
    async def versions(self, info: Info[ReadContext, None]) -> list[WorkflowVersion]:
        rows = await db.versions_of(info.context.pool, self.id)
        return [
            WorkflowVersion(
                version=r["version"], definition=r["definition"], published_at=r["published_at"]
            )
            for r in rows
        ]


@strawberry.type
class WorkflowEdge:
    cursor: str
    node: Workflow


@strawberry.type
class WorkflowConnection:
    edges: list[WorkflowEdge]
    page_info: PageInfo


def _run(r: Any) -> Run:
    return Run(
        id=r["run_id"],
        status=RunStatus(r["status"]),
        workflow_id=r["workflow_id"],
        workflow_name=r["workflow_name"],
        version=r["version"],
        input=r["input"],
        output=r["output"],
        error=r["error"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
    )


def _workflow(r: Any) -> Workflow:
    return Workflow(
        id=r["workflow_id"],
        name=r["name"],
        latest_version=r["latest_version"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


@strawberry.type
class Query:
    @strawberry.field(description="A workflow by id; null if there is none for the caller.")
    async def workflow(self, info: Info[ReadContext, None], id: strawberry.ID) -> Workflow | None:
        row = await db.workflow(info.context.pool, info.context.tenant, str(id))
        return _workflow(row) if row else None

    @strawberry.field
    async def workflows(
        self, info: Info[ReadContext, None], first: int = 20, after: str | None = None
    ) -> WorkflowConnection:
        limit = _page_size(first)
        key = None
        if after:
            name, workflow_id = decode_cursor(after, 2)
            key = (str(name), str(workflow_id))
        rows = await db.workflows_page(info.context.pool, info.context.tenant, limit + 1, key)
        edges = [
            WorkflowEdge(cursor=encode_cursor(r["name"], r["workflow_id"]), node=_workflow(r))
            for r in rows[:limit]
        ]
        return WorkflowConnection(
            edges=edges,
            page_info=PageInfo.after(edges, more=len(rows) > limit),
        )

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
        return _run(row) if row else None

    @strawberry.field(description="Runs, newest first.")
    async def runs(
        self,
        info: Info[ReadContext, None],
        filter: RunFilter | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> RunConnection:
        limit = _page_size(first)
        key = None
        if after:
            created, run_id = decode_cursor(after, 2)
            key = (_datetime_key(created), str(run_id))
        rows = await db.runs_page(
            info.context.pool,
            info.context.tenant,
            limit=limit + 1,
            after=key,
            status=filter.status.value if filter and filter.status else None,
            workflow_id=filter.workflow_id if filter else None,
        )
        edges = [
            RunEdge(cursor=encode_cursor(r["created_at"].isoformat(), r["run_id"]), node=_run(r))
            for r in rows[:limit]
        ]
        return RunConnection(
            edges=edges,
            page_info=PageInfo.after(edges, more=len(rows) > limit),
        )

    @strawberry.field(
        description="Approvals waiting for a decision across the caller's runs, oldest first."
    )
    async def pending_approvals(
        self, info: Info[ReadContext, None], first: int = 50, after: str | None = None
    ) -> ApprovalConnection:
        limit = _page_size(first)
        key = None
        if after:
            requested, run_id, node_id = decode_cursor(after, 3)
            key = (_datetime_key(requested), str(run_id), str(node_id))
        rows = await db.pending_approvals(info.context.pool, info.context.tenant, limit + 1, key)
        edges = [
            ApprovalEdge(
                cursor=encode_cursor(r["requested_at"].isoformat(), r["run_id"], r["node_id"]),
                node=Approval.of(r),
            )
            for r in rows[:limit]
        ]
        return ApprovalConnection(
            edges=edges, page_info=PageInfo.after(edges, more=len(rows) > limit)
        )


@strawberry.type
class Subscription:
    """Over WebSocket (graphql-transport-ws). The API key is checked again before every
    message; a run of another tenant is an error, never data."""

    @strawberry.subscription(
        description="The run as it is now, then again each time it changes; completes after "
        "sending it in a terminal status (COMPLETED, FAILED, CANCELLED)."
    )
    async def run_updated(
        self, info: Info[ReadContext, None], id: strawberry.ID
    ) -> AsyncGenerator[Run, None]:
        async with aclosing(live.run_updates(info.context, str(id))) as rows:
            async for row in rows:
                yield _run(row)

    @strawberry.subscription(
        description="The run's events in log order, then each new one as it is projected; "
        "completes after the run's terminal event. `after` resumes: an event cursor (as "
        "`Run.events` and this subscription issue them) or a position "
        "(`topic:partition:offset`, as the command API answers)."
    )
    async def run_events(
        self, info: Info[ReadContext, None], id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[EventEdge, None]:
        async with aclosing(live.run_events(info.context, str(id), after)) as rows:
            async for row in rows:
                yield _event_edge(row)


def nodes_loader(pool: Any) -> DataLoader[str, list[Node]]:
    """Every run's nodes in one query per request, not one per run."""

    async def load(run_ids: list[str]) -> list[list[Node]]:
        by_run: dict[str, list[Node]] = {r: [] for r in run_ids}
        for r in await db.nodes_of_runs(pool, run_ids):
            by_run[r["run_id"]].append(
                Node(
                    id=r["node_id"],
                    type=r["node_type"],
                    status=NodeStatus(r["status"]),
                    attempts=r["attempts"],
                    started_at=r["started_at"],
                    finished_at=r["finished_at"],
                    output_ref=r["output_ref"],
                    error=r["error"],
                    inline_output=r["output"],
                    prompt_tokens=r["prompt_tokens"],
                    completion_tokens=r["completion_tokens"],
                    total_tokens=r["total_tokens"],
                    cached_tokens=r["cached_tokens"],
                )
            )
        return [by_run[r] for r in run_ids]

    return DataLoader(load_fn=load)


def _is_internal(error: GraphQLError) -> bool:
    """A fault of ours (a database error, a bug), not of the query: its text may show
    internals, so the client gets a generic message and the log gets the traceback."""
    original = error.original_error
    return original is not None and not isinstance(original, QueryApiError | CasError)


class ReadSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # A client's mistake (a bad cursor, a syntax error) is answered, not logged.
        super().process_errors([e for e in errors if _is_internal(e)], execution_context)


schema = ReadSchema(
    query=Query,
    subscription=Subscription,
    extensions=[*extensions(), lambda: MaskErrors(should_mask_error=_is_internal)],
)
