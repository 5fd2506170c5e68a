"""Registered node types and their live workers, in PostgreSQL.

A node type of a tenant's own is registered by its worker when it starts (or by anyone with
the tenant's ``publish`` scope, ``PUT /v1/node-types/{name}``): a name, the JSON Schema of a
node's config, the schema of its output and a description. Every registration is also an
event in the log (``node_type.registered``); this table is the command side's view of them, so
that publishing checks configs without waiting for the read side, as ``workflow_registry``
does for versions.

A name belongs to the first tenant that registers it, because its worker topic
(``aob.tasks.<name>``) is one for the whole deployment; another tenant is told so (409). The
built-in types' names are taken by the engine.

Liveness: each worker that serves a type beats every few seconds (``beat``); a type is served
while some worker beat within ``LIVE_WITHIN_S``. A worker that stops cleanly says so
(``gone``); one that is killed simply stops beating.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schemas.ir import IRNodeType
from schemas.workflow import KNOWN_NODE_TYPES

BUILT_IN_TYPES: frozenset[str] = KNOWN_NODE_TYPES
# Lower case, so that a topic name never differs from another by case only.
NODE_TYPE_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,47}$"
LIVE_WITHIN_S = 10.0
# The tenant the built-in workers beat as: their types are every tenant's.
ENGINE = ""

DDL = """
CREATE TABLE IF NOT EXISTS node_types (
    name           text PRIMARY KEY,
    tenant         text NOT NULL,
    config_schema  jsonb NOT NULL,
    output_schema  jsonb,
    description    text NOT NULL DEFAULT '',
    registered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS node_types_by_tenant ON node_types (tenant, name);
CREATE TABLE IF NOT EXISTS node_type_workers (
    name       text NOT NULL,
    worker     text NOT NULL,
    tenant     text NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, worker)
);
"""


async def ensure_schema(conn: asyncpg.Connection) -> None:
    """Make the tables if need be (in the connection's default schema, never a read schema:
    the command API writes them, the query API reads them)."""
    async with conn.transaction():
        # Serialised: two processes starting at once could both try to create a row type.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('aob.node_types.schema'))")
        await conn.execute(DDL)


class NodeTypeTaken(Exception):
    """The name is a built-in type's, or another tenant's type's."""


@dataclass(frozen=True)
class NodeTypeSpec:
    """What is registered: a name and what a node of the type takes and gives."""

    name: str
    config_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    description: str = ""

    def for_ir(self) -> IRNodeType:
        return IRNodeType(
            config_schema=self.config_schema,
            output_schema=self.output_schema,
            description=self.description,
        )


@dataclass(frozen=True)
class NodeType(NodeTypeSpec):
    """A registered type as stored."""

    tenant: str = ""
    registered_at: datetime | None = None


def _json(value: Any) -> Any:
    # A pool may decode jsonb itself (the query API's does); a plain one gives its text.
    return json.loads(value) if isinstance(value, str) else value


def _row(row: asyncpg.Record) -> NodeType:
    return NodeType(
        name=row["name"],
        config_schema=_json(row["config_schema"]),
        output_schema=_json(row["output_schema"]),
        description=row["description"],
        tenant=row["tenant"],
        registered_at=row["registered_at"],
    )


_COLUMNS = "name, tenant, config_schema, output_schema, description, registered_at"


class NodeTypeRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ensure_schema(self) -> None:
        async with self._pool.acquire() as conn:
            await ensure_schema(conn)

    async def register(self, tenant: str, spec: NodeTypeSpec) -> NodeType:
        """Store ``spec`` as ``tenant``'s type (its schemas replaced if it was already);
        ``NodeTypeTaken`` if the name is a built-in's or another tenant's."""
        if spec.name in BUILT_IN_TYPES:
            raise NodeTypeTaken(f"{spec.name!r} is a built-in node type")
        row = await self._pool.fetchrow(
            f"""INSERT INTO node_types (name, tenant, config_schema, output_schema, description)
                VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)
                ON CONFLICT (name) DO UPDATE SET config_schema = EXCLUDED.config_schema,
                    output_schema = EXCLUDED.output_schema,
                    description = EXCLUDED.description, registered_at = now()
                WHERE node_types.tenant = EXCLUDED.tenant
                RETURNING {_COLUMNS}""",
            spec.name,
            tenant,
            json.dumps(spec.config_schema),
            None if spec.output_schema is None else json.dumps(spec.output_schema),
            spec.description,
        )
        if row is None:  # the WHERE held the update back: the name is another tenant's
            raise NodeTypeTaken(f"node type {spec.name!r} is registered by another tenant")
        return _row(row)

    async def owner(self, name: str) -> str | None:
        """The tenant that registered ``name``; None if no tenant has."""
        tenant: str | None = await self._pool.fetchval(
            "SELECT tenant FROM node_types WHERE name = $1", name
        )
        return tenant

    async def find(self, tenant: str, names: Sequence[str]) -> dict[str, NodeType]:
        """Those of ``names`` that are ``tenant``'s types, by name (one round trip)."""
        if not names:
            return {}
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM node_types WHERE tenant = $1 AND name = ANY($2::text[])",
            tenant,
            list(names),
        )
        return {r["name"]: _row(r) for r in rows}

    async def types(self, tenant: str, limit: int | None = None) -> list[NodeType]:
        """``tenant``'s types by name, the first ``limit`` of them if given."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM node_types WHERE tenant = $1 ORDER BY name LIMIT $2",
            tenant,
            limit,
        )
        return [_row(r) for r in rows]

    async def beat(self, tenant: str, names: Sequence[str], worker: str) -> None:
        """``worker`` serves ``names`` now."""
        await self._pool.execute(
            """INSERT INTO node_type_workers (name, worker, tenant)
               SELECT unnest($1::text[]), $2, $3
               ON CONFLICT (name, worker) DO UPDATE SET last_seen = now()""",
            list(names),
            worker,
            tenant,
        )

    async def gone(self, names: Sequence[str], worker: str) -> None:
        """``worker`` stopped serving ``names``."""
        await self._pool.execute(
            "DELETE FROM node_type_workers WHERE worker = $1 AND name = ANY($2::text[])",
            worker,
            list(names),
        )

    async def live(self, tenants: Sequence[str]) -> dict[str, list[str]]:
        """Type name -> the workers serving it now (a beat within ``LIVE_WITHIN_S``), for
        the types ``tenants`` serve (``ENGINE`` for the built-in workers')."""
        rows = await self._pool.fetch(
            """SELECT name, worker FROM node_type_workers
               WHERE tenant = ANY($1::text[])
                 AND last_seen > now() - make_interval(secs => $2)
               ORDER BY name, worker""",
            list(tenants),
            LIVE_WITHIN_S,
        )
        workers: dict[str, list[str]] = {}
        for r in rows:
            workers.setdefault(r["name"], []).append(r["worker"])
        return workers
