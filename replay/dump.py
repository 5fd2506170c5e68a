"""A stable dump of a schema's read models: what a rebuild must reproduce, row for row.

Every table that ``read_model/schema.sql`` creates, rows ordered by primary key, each row
as one canonical JSON line (sorted keys, no spaces, timestamps in UTC), and a SHA-256 digest
per table. Two dumps are equal exactly when the read models hold the same facts.

Left out are only the columns that record when the projector itself wrote a row (a column
whose default is the clock, such as ``projection_offsets.updated_at``): they say nothing
about the log, and a rebuild writes every row anew.

The table list is never written down here: it is what ``schema.sql`` creates, found by
running it into a scratch schema in a transaction that is rolled back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg

from read_model.schema import check_schema_name, schema_sql

# Defaults that stamp the time of the write (lower-case, as pg_get_expr prints them).
_CLOCK_DEFAULTS = ("now()", "current_timestamp", "clock_timestamp()", "statement_timestamp()")
_SCRATCH = "aob_dump_scratch"


@dataclass(frozen=True)
class TableDump:
    """One table: its rows as canonical JSON lines, in primary-key order."""

    name: str
    rows: tuple[str, ...]
    excluded: tuple[str, ...] = ()  # clock columns left out

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for line in self.rows:
            h.update(line.encode())
            h.update(b"\n")
        return h.hexdigest()


@dataclass(frozen=True)
class Dump:
    """The read models of one schema."""

    schema: str
    tables: dict[str, TableDump] = field(default_factory=dict)

    def digests(self) -> dict[str, str]:
        return {name: t.digest for name, t in sorted(self.tables.items())}

    def lines(self) -> Iterator[str]:
        """JSON lines: every row as ``{"table": …, "row": …}``, then one digest line per
        table; what ``aob replay dump`` writes."""
        for name, table in sorted(self.tables.items()):
            for row in table.rows:
                yield f'{{"table":{json.dumps(name)},"row":{row}}}'
        for name, table in sorted(self.tables.items()):
            yield json.dumps(
                {"table": name, "rows": len(table.rows), "sha256": table.digest},
                separators=(",", ":"),
            )


def canonical(row: object) -> str:
    """One row (decoded JSON) as canonical JSON text: sorted keys, no whitespace."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def is_clock_default(default: str | None) -> bool:
    """Whether a column default stamps the time of the write."""
    return default is not None and any(c in default.lower() for c in _CLOCK_DEFAULTS)


def differences(before: Dump, after: Dump, limit: int = 5) -> list[str]:
    """Readable differences between two dumps (empty when they are equal): per table, the
    first ``limit`` rows found in one dump only."""
    out: list[str] = []
    for name in sorted(set(before.tables) | set(after.tables)):
        a, b = before.tables.get(name), after.tables.get(name)
        if a is None or b is None:
            out.append(f"{name}: only in {'after' if a is None else 'before'}")
            continue
        if a.digest == b.digest:
            continue
        only_a = sorted(set(a.rows) - set(b.rows))
        only_b = sorted(set(b.rows) - set(a.rows))
        out.append(
            f"{name}: {len(a.rows)} rows before, {len(b.rows)} after; "
            f"{len(only_a)} only before, {len(only_b)} only after"
        )
        out.extend(f"  - {r}" for r in only_a[:limit])
        out.extend(f"  + {r}" for r in only_b[:limit])
    return out


async def read_model_tables(conn: asyncpg.Connection) -> list[str]:
    """The names of the tables ``schema.sql`` creates, sorted."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"CREATE SCHEMA {_SCRATCH}")
        await conn.execute(f"SET LOCAL search_path = {_SCRATCH}")
        await conn.execute(schema_sql())
        names = await tables_of(conn, _SCRATCH)
    finally:
        await tx.rollback()  # nothing of the scratch schema stays
    return names


async def tables_of(conn: asyncpg.Connection, schema: str) -> list[str]:
    """The ordinary (and partitioned) tables of ``schema``, sorted by name."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname""",
        schema,
    )
    return [r["relname"] for r in rows]


async def dump_table(conn: asyncpg.Connection, schema: str, table: str) -> TableDump:
    columns = await conn.fetch(
        """SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS dflt
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        schema,
        table,
    )
    excluded = tuple(c["attname"] for c in columns if is_clock_default(c["dflt"]))
    key = await conn.fetch(
        """SELECT a.attname
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos) ON true
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
           WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
           ORDER BY k.pos""",
        schema,
        table,
    )
    # Without a primary key every column orders the rows (a total order all the same).
    order = [r["attname"] for r in key] or [c["attname"] for c in columns]
    qualified = f"{_quote(schema)}.{_quote(table)}"
    drop = "".join(f" - {_literal(c)}" for c in excluded)
    rows = await conn.fetch(
        f"SELECT (to_jsonb(t){drop})::text AS row FROM {qualified} t "
        f"ORDER BY {', '.join(_quote(c) for c in order)}"
    )
    return TableDump(table, tuple(canonical(json.loads(r["row"])) for r in rows), excluded)


async def dump_schema(dsn: str, schema: str | None = None) -> Dump:
    """The dump of the read models in ``schema`` (default: the default schema), read in one
    repeatable-read transaction so every table shows the same moment."""
    # UTC: to_jsonb prints timestamps in the session's time zone.
    conn = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC"})
    try:
        name = check_schema_name(schema) if schema else await _current_schema(conn)
        names = await read_model_tables(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            present = set(await tables_of(conn, name))
            tables = {t: await dump_table(conn, name, t) for t in names if t in present}
        return Dump(name, tables)
    finally:
        await conn.close()


async def _current_schema(conn: asyncpg.Connection) -> str:
    name: str | None = await conn.fetchval("SELECT current_schema()")
    if name is None:
        raise ValueError("the connection has no current schema (check search_path)")
    return name


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
