"""Keyset pagination, written once for every connection (runs, workflows, a run's events,
pending approvals).

A connection is declared as a ``Pages``: its GraphQL connection and edge types, how a row
becomes a node, and its ``Keyset`` (the columns that order it, which its cursors hold). A
resolver then only says how to fetch ``limit`` rows after a key. Pages are keyset, not
offset, so they neither skip nor repeat rows while new ones are inserted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import strawberry

from query_api.cursors import decode_cursor, encode_cursor
from query_api.errors import BadCursor, PageSizeOutOfRange

MAX_PAGE = 500

Key = tuple[Any, ...]
# Fetches up to ``limit`` rows after ``key`` (from the start when it is None), in key order.
Fetch = Callable[[int, Key | None], Awaitable[Sequence[Any]]]


def page_size(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise PageSizeOutOfRange(f"first must be between 1 and {MAX_PAGE}, not {first}")
    return first


def int_key(value: Any) -> int:
    """A cursor's integer column, as the database compares it."""
    if not isinstance(value, int):
        raise BadCursor("cursor is not one this API issued")
    return value


def datetime_key(value: Any) -> datetime:
    """A cursor's timestamp column (ISO 8601 with a zone), as the database compares it."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as e:
        raise BadCursor("cursor is not one this API issued") from e
    if moment.tzinfo is None:
        raise BadCursor("cursor is not one this API issued")
    return moment


def str_key(value: Any) -> str:
    """A cursor's text column (an id, a name)."""
    return str(value)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True)
class Keyset:
    """The columns that order a connection, each with how a cursor's value is read back."""

    columns: tuple[tuple[str, Callable[[Any], Any]], ...]

    def cursor(self, row: Any) -> str:
        """The opaque cursor of ``row``: its key columns, a timestamp in ISO 8601."""
        values = (row[name] for name, _ in self.columns)
        return encode_cursor(*(v.isoformat() if isinstance(v, datetime) else v for v in values))

    def after(self, cursor: str) -> Key:
        """The key ``cursor`` holds; BadCursor unless this keyset issued it."""
        values = decode_cursor(cursor, len(self.columns))
        return tuple(read(v) for (_, read), v in zip(self.columns, values, strict=True))


class _Edge(Protocol):
    cursor: str


E = TypeVar("E", bound=_Edge)
C = TypeVar("C")


@dataclass(frozen=True)
class Pages(Generic[C, E]):
    """One connection: the types it answers with, how a row becomes an edge, its order."""

    connection: Callable[..., C]  # built as connection(edges=..., page_info=...)
    edge_type: Callable[..., E]  # built as edge_type(cursor=..., node=...)
    node: Callable[[Any], Any]
    order: Keyset

    def edge(self, row: Any) -> E:
        return self.edge_type(cursor=self.order.cursor(row), node=self.node(row))

    async def page(self, first: int, after: str | None, fetch: Fetch) -> C:
        """The ``first`` rows after the cursor ``after``, and whether more follow."""
        limit = page_size(first)
        key = self.order.after(after) if after else None
        rows = await fetch(limit + 1, key)  # one more than asked: is there a next page?
        edges = [self.edge(r) for r in rows[:limit]]
        end_cursor = edges[-1].cursor if edges else None
        return self.connection(
            edges=edges,
            page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=end_cursor),
        )
