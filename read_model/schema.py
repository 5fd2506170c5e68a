"""The read models' Postgres schema: its tables, its name, its creation and its batch lock.

Tables are created from ``schema.sql`` at start-up (idempotent) by every process that needs
them: the projector, the query API, a rebuild. A projection may write into its own Postgres
schema (``--schema``): a rebuild or a test then never touches the live tables, and a swap is
a rename.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from read_model.errors import SchemaNameInvalid

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Every projector writing one schema takes that schema's batch lock per batch, so batches
# of two projectors of one schema never interleave: each reads the state the other
# committed, and dedupe does the rest. The key is (this class, a hash of the schema's name):
# a rebuild writing its own schema never stalls the live projector, and the swap of a
# rebuilt schema takes the live schema's key to find the live projector between batches.
BATCH_LOCK_CLASS = 0x0A0B
# current_schema(): the schema the connection's unqualified names resolve in. hashtext runs
# on the server, so every writer and the swap derive the same key whatever their language.
_LOCK_BATCHES = (
    "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema(), '')))"
)


def schema_sql() -> str:
    return resources.files("read_model").joinpath("schema.sql").read_text()


def check_schema_name(schema: str) -> str:
    if not _IDENTIFIER.match(schema):
        raise SchemaNameInvalid(f"schema {schema!r} is not a lower-case SQL identifier")
    return schema


def quoted(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (a schema or table name in DDL)."""
    return '"' + identifier.replace('"', '""') + '"'


async def connect(dsn: str, schema: str | None = None) -> asyncpg.Connection:
    """A writer's connection whose unqualified table names resolve in ``schema`` (else the
    default one)."""
    settings = {"application_name": "aob-projections"}
    if schema is not None:
        settings["search_path"] = check_schema_name(schema)
    conn: asyncpg.Connection = await asyncpg.connect(dsn, server_settings=settings)
    return conn


async def lock_batches(conn: asyncpg.Connection, schema: str | None = None) -> None:
    """Hold the batch lock of ``schema`` (default: the connection's own) until the end of the
    current transaction."""
    await conn.execute(_LOCK_BATCHES, BATCH_LOCK_CLASS, schema)


async def ensure_schema(conn: asyncpg.Connection, schema: str | None = None) -> None:
    # Two projectors starting together would race on CREATE TABLE IF NOT EXISTS (it is not
    # atomic against the catalog), hence the lock.
    async with conn.transaction():
        await lock_batches(conn, schema)
        if schema is not None:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {check_schema_name(schema)}")
        await conn.execute(schema_sql())
