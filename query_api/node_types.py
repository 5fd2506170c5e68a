"""A run's nodes as GraphQL gives them (``NodeExecution``), and their token usage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api.context import ReadContext
from query_api.pagination import MAX_PAGE, page_size
from query_api.rows import from_row
from query_api.statuses import NodeStatus


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


@strawberry.type(description="What a run's agents spent, every model and tool call counted.")
class Spend:
    tokens: int = strawberry.field(description="Tokens, prompt and completion.")
    usd: float = strawberry.field(
        description="US dollars, as each call was priced when it was made (calls of a model "
        "with no price count nothing here)."
    )
    tool_calls: int = strawberry.field(
        default=0,
        description="Tool calls the agents made (each distinct call once, however many "
        "attempts it took).",
    )

    @staticmethod
    def of(rows: Sequence[Any]) -> Spend:
        return Spend(
            tokens=sum(r.total_tokens for r in rows),
            usd=sum(r.cost_usd for r in rows),
            tool_calls=sum(r.tool_call_count for r in rows),
        )


@strawberry.type(description="One tool call of an agent node (run.tool_called).")
class ToolCall:
    call_id: str = strawberry.field(
        description="The same for the same call made again by a later attempt."
    )
    tool: str = strawberry.field(description="`http`, a node type, or `server__tool` (MCP).")
    attempt: int
    ok: bool
    error: str | None
    duration_ms: float
    result_ref: str | None = strawberry.field(
        description="CAS reference of a large result; a small one is in the event."
    )
    arguments_sha256: str
    at: datetime

    @staticmethod
    def of(entry: dict[str, Any]) -> ToolCall:
        return ToolCall(
            call_id=str(entry.get("call_id", "")),
            tool=str(entry.get("tool", "")),
            attempt=int(entry.get("attempt") or 0),
            ok=bool(entry.get("ok")),
            error=entry.get("error"),
            duration_ms=float(entry.get("duration_ms") or 0.0),
            result_ref=entry.get("result_ref"),
            arguments_sha256=str(entry.get("arguments_sha256", "")),
            at=datetime.fromisoformat(str(entry.get("at"))),
        )


@strawberry.type(description="What a run's agents may spend together.")
class Budget:
    tokens: int | None = strawberry.field(description="Tokens in all; null: no bound.")
    usd: float | None = strawberry.field(description="US dollars; null: no bound.")
    on_exceed: str = strawberry.field(
        description="`fail`: a node whose next call would pass it fails. `wait`: it waits "
        "for a person to raise it (an approval of kind BUDGET)."
    )


@strawberry.type(
    name="MapItem",
    description="One item of a map node: the inner node run for the item at `index` of the "
    "map's list, with its own attempts.",
)
class MapItem:
    index: int
    status: NodeStatus
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    output_ref: str | None = strawberry.field(
        description="Set when the item's output was too large to be inline (in the CAS)."
    )
    error: str | None
    inline_output: strawberry.Private[Any] = None

    @staticmethod
    def of(value: dict[str, Any]) -> MapItem:
        def at(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        return MapItem(
            index=int(value["index"]),
            status=NodeStatus(value["status"]),
            attempts=int(value.get("attempts") or 0),
            started_at=at(value.get("started_at")),
            finished_at=at(value.get("finished_at")),
            output_ref=value.get("output_ref"),
            error=value.get("error"),
            inline_output=value.get("output"),
        )

    @strawberry.field(
        description="The item's output when it is inline; null when it is in the CAS "
        '(`outputRef`: the map\'s own `output` lists it as `{"$ref": ...}`).'
    )
    def output(self) -> JSON | None:
        return self.inline_output


MAX_ITEMS_PAGE = 1000


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
    waiting_reason: str | None = strawberry.field(
        description="Why the node is still SCHEDULED, when a worker holds it back for a "
        "limit (the tenant's slots of its type, its concurrency key, a rate limit); null "
        "otherwise, and once the node moves on."
    )
    inline_output: strawberry.Private[Any]
    prompt_tokens: strawberry.Private[int] = 0
    completion_tokens: strawberry.Private[int] = 0
    total_tokens: strawberry.Private[int] = 0
    cached_tokens: strawberry.Private[int] = 0
    cost_usd: strawberry.Private[float] = 0.0
    tool_call_count: int = strawberry.field(
        default=0, description="How many distinct tool calls the node made (agent nodes)."
    )
    tool_call_rows: strawberry.Private[Any] = None
    item_rows: strawberry.Private[Any] = None
    child_run_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="subworkflow nodes: the child run their latest attempt started (the run "
        "is among `Run.children`).",
    )

    @staticmethod
    def of(r: Any) -> Node:
        """A ``nodes`` row."""
        return from_row(
            Node,
            r,
            id=r["node_id"],
            type=r["node_type"],
            status=NodeStatus(r["status"]),
            inline_output=r["output"],
            tool_call_count=r.get("tool_call_count") or 0,
            tool_call_rows=r.get("tool_calls"),
            item_rows=r.get("items"),
            child_run_id=r.get("child_run_id"),
        )

    @strawberry.field(description="The node's tool calls in log order (agent nodes).")
    def tool_calls(
        self,
        first: Annotated[
            int,
            strawberry.argument(description="How many to return, at most (1 to 500)."),
        ] = MAX_PAGE,
    ) -> list[ToolCall]:
        limit = page_size(first)  # refused before anything is read
        rows = self.tool_call_rows
        if isinstance(rows, str):  # asyncpg hands jsonb over as its text
            rows = json.loads(rows)
        if not isinstance(rows, list):
            return []
        return [ToolCall.of(e) for e in rows[:limit] if isinstance(e, dict)]

    @strawberry.field(
        description="Map nodes: how many of its items have been scheduled so far (null for "
        "other nodes)."
    )
    def item_count(self) -> int | None:
        return len(self.item_rows) if self.item_rows is not None else None

    @strawberry.field(
        description="Map nodes: its items in index order (those scheduled so far), from "
        f"`offset`, at most `first` (up to {MAX_ITEMS_PAGE}); null for other nodes."
    )
    def items(self, first: int = 100, offset: int = 0) -> list[MapItem] | None:
        if self.item_rows is None:
            return None
        rows = self.item_rows
        if isinstance(rows, str):
            rows = json.loads(rows)
        ordered = sorted(rows.values(), key=lambda v: int(v["index"]))
        start = max(offset, 0)
        return [MapItem.of(v) for v in ordered[start : start + max(0, min(first, MAX_ITEMS_PAGE))]]

    @strawberry.field(description="Token usage of this node's model calls (agent nodes).")
    def usage(self) -> TokenUsage:
        return TokenUsage.of([self])

    @strawberry.field(description="The output; fetched from the CAS when it is not inline.")
    async def output(self, info: Info[ReadContext, None]) -> JSON | None:
        if self.inline_output is not None or self.output_ref is None:
            return self.inline_output
        return await info.context.cas.get_json(self.output_ref)
