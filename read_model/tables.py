"""The SQL of the run tables, derived from their row dataclasses (``read_model.rows``).

Each table's columns are its row's fields, in field order; nothing here or in a caller
writes a column list out by hand. A column's SQL kind comes from the field's annotation:
``str`` text, ``int`` bigint (Postgres casts it to an integer column on insert), ``float``
double precision, ``bool`` boolean, ``datetime`` timestamptz (each possibly ``| None``), and
JSON for anything else
(``Any``, lists, dicts), which travels as its text and is stored as jsonb.

Rows are written set-based, one statement per table and batch whatever its size
(``unnest`` of one array per column): one statement per row would cap the projector at a
few thousand rows a second.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import asyncpg

from read_model.rows import ApprovalRow, NodeRow, RunRow, VersionRow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    R = TypeVar("R", bound=DataclassInstance)
else:
    R = TypeVar("R")

JSONB = "jsonb"
_SQL_TYPES: dict[object, str] = {
    str: "text",
    int: "bigint",
    float: "double precision",
    bool: "boolean",
    datetime: "timestamptz",
}


def sql_type(annotation: object) -> str:
    """The SQL kind of a field annotated ``annotation``: a scalar's type, else jsonb."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            annotation = kinds[0]
    return _SQL_TYPES.get(annotation, JSONB)


def _dumps(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(text: str | None) -> object:
    return None if text is None else json.loads(text)


@dataclasses.dataclass(frozen=True)
class Table(Generic[R]):
    """A read-model table whose rows are ``row`` dataclasses, keyed by ``key``."""

    name: str
    row: type[R]
    key: tuple[str, ...]
    # Columns written when the row is made and never updated afterwards.
    insert_only: tuple[str, ...] = ()
    # False: a stored row is final, a second write of its key changes nothing.
    replace: bool = True

    def __post_init__(self) -> None:
        unknown = {*self.key, *self.insert_only} - set(self.columns)
        if unknown:
            raise ValueError(f"{self.name}: {sorted(unknown)} are not fields of {self.row}")

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.row))

    @cached_property
    def types(self) -> dict[str, str]:
        """Each column's SQL kind, from its field's annotation."""
        hints = typing.get_type_hints(self.row)
        return {c: sql_type(hints[c]) for c in self.columns}

    @cached_property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c for c, kind in self.types.items() if kind == JSONB)

    def select_list(self, without: Iterable[str] = ()) -> str:
        """The columns to read, in field order, less ``without`` (which must be columns)."""
        left_out = set(without)
        if left_out - set(self.columns):
            raise ValueError(f"{self.name} has no columns {sorted(left_out - set(self.columns))}")
        return ", ".join(c for c in self.columns if c not in left_out)

    @cached_property
    def upsert_sql(self) -> str:
        """INSERT of every column from one array each (``$1`` … in field order); a row
        already stored under the key is replaced (but for ``insert_only`` columns), or kept
        as it is when the table does not ``replace``."""
        cols = ", ".join(self.columns)
        arrays = ", ".join(
            f"${i}::{'text' if kind == JSONB else kind}[]"
            for i, kind in enumerate(self.types.values(), start=1)
        )
        values = ", ".join(f"{c}::jsonb" if c in self.json_columns else c for c in self.columns)
        if self.replace:
            fixed = {*self.key, *self.insert_only}
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.columns if c not in fixed)
            conflict = f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"
        else:
            conflict = "ON CONFLICT DO NOTHING"
        return (
            f"INSERT INTO {self.name} ({cols})\n"
            f"SELECT {values}\n"
            f"FROM unnest({arrays}) AS x({cols})\n"
            f"{conflict}"
        )

    def arrays(self, rows: Sequence[R]) -> list[list[Any]]:
        """The arguments of ``upsert_sql``: one list per column, JSON columns as text."""
        return [
            [_dumps(getattr(r, c)) for r in rows]
            if c in self.json_columns
            else [getattr(r, c) for r in rows]
            for c in self.columns
        ]

    async def write(self, conn: asyncpg.Connection, rows: Sequence[R]) -> None:
        """Write ``rows`` in one statement. A table that replaces rows needs their keys
        distinct: Postgres updates one row at most once per statement."""
        if rows:
            await conn.execute(self.upsert_sql, *self.arrays(rows))

    async def fetch(self, conn: asyncpg.Connection, where: str, *args: object) -> list[R]:
        """The stored rows that match ``where`` (SQL over the columns, ``$1`` … ``args``)."""
        records = await conn.fetch(
            f"SELECT {self.select_list()} FROM {self.name} WHERE {where}", *args
        )
        return [self.from_record(r) for r in records]

    def from_record(self, record: Any) -> R:
        """A row from a record read with ``select_list()``; JSON columns come as text (the
        projector's connections decode no JSON)."""
        values = dict(record)
        for c in self.json_columns & values.keys():
            values[c] = _loads(values[c])
        return self.row(**values)


RUNS = Table("runs", RunRow, key=("run_id",))
NODES = Table("node_executions", NodeRow, key=("run_id", "node_id"))
# An approval's tenant is its run's when it is requested; a later write never moves it.
APPROVALS = Table("approvals", ApprovalRow, key=("run_id", "node_id"), insert_only=("tenant",))
# A version is immutable once made.
RUN_VERSIONS = Table("run_versions", VersionRow, key=("run_id", "seq"), replace=False)
