"""``projection_offsets``: how far each projection has read the log, per topic and partition.

The projector writes a batch's next offsets in the same transaction as the batch's rows, so
an offset stored here means the rows of every event before it are committed and visible.
Every reader and writer of the table goes through this module: the projector (where to
resume), a rebuild (how far the live projector is), the query API (``after:`` waits).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from read_model.schema import quoted

# The projection that builds the read models of schema.sql: the name its offsets are kept
# under, unless a projector is started with another (``--name``).
DEFAULT_PROJECTION = "read_models"

Key = tuple[str, int]  # (topic, partition)


async def load_offsets(
    conn: asyncpg.Connection, projection: str, schema: str | None = None
) -> dict[Key, int]:
    """The next offset to read of every partition ``projection`` has stored, in ``schema``
    (default: the connection's search path). None stored when the table does not exist
    there: no projector ever ran in that schema."""
    table = "projection_offsets" if schema is None else f"{quoted(schema)}.projection_offsets"
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return {}
    rows = await conn.fetch(
        f"SELECT topic, partition, next_offset FROM {table} WHERE projection = $1", projection
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def next_offset(
    db: asyncpg.Pool | asyncpg.Connection, projection: str, topic: str, partition: int
) -> int | None:
    """The next offset ``projection`` will read of one partition; None if it stored none."""
    value: int | None = await db.fetchval(
        """SELECT next_offset FROM projection_offsets
           WHERE projection = $1 AND topic = $2 AND partition = $3""",
        projection,
        topic,
        partition,
    )
    return value


async def store_offsets(
    conn: asyncpg.Connection, projection: str, next_offsets: Mapping[Key, int]
) -> None:
    """Record ``next_offsets`` (call it in the batch's transaction). Offsets only move
    forward: a projector that re-reads older records never moves them back."""
    await conn.executemany(
        """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (projection, topic, partition)
           DO UPDATE SET next_offset = GREATEST(projection_offsets.next_offset,
                                                EXCLUDED.next_offset),
                         updated_at = now()""",
        [(projection, t, p, o) for (t, p), o in next_offsets.items()],
    )
