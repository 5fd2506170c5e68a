"""The command side's own tables (it never writes read models).

- ``workflow_registry``: every published version, so a run can be bound to a version at
  once, without waiting for the read side to catch up. Keyed and read by tenant: a workflow
  id is derivable by anyone, so an id alone never reaches another tenant's versions.
- ``runs_registry``: which tenant a run belongs to, so commands on a run are authorised.
- ``idempotency_keys``: the first answer to each ``Idempotency-Key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from infra.coalesce import Coalesced

DDL = """
CREATE TABLE IF NOT EXISTS workflow_registry (
    workflow_id        text NOT NULL,
    version            text NOT NULL,
    tenant             text NOT NULL,
    name               text NOT NULL,
    definition_ref     text NOT NULL,
    ir_ref             text NOT NULL,
    event_id           text NOT NULL,
    position           text NOT NULL,
    last_published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, workflow_id, version)
);
-- Tables made before workflows were keyed by tenant have the key (workflow_id, version), on
-- which one tenant's publication could move another's latest: moved to the tenant's key in
-- place, once (a key that includes tenant is left alone).
DO $$
DECLARE
    old_key text;
BEGIN
    SELECT c.conname INTO old_key FROM pg_constraint c
     WHERE c.conrelid = 'workflow_registry'::regclass AND c.contype = 'p'
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                          AND a.attname = 'tenant');
    IF old_key IS NOT NULL THEN
        EXECUTE format('ALTER TABLE workflow_registry DROP CONSTRAINT %I', old_key);
        ALTER TABLE workflow_registry ADD PRIMARY KEY (tenant, workflow_id, version);
    END IF;
END
$$;
DROP INDEX IF EXISTS workflow_registry_latest;
CREATE INDEX IF NOT EXISTS workflow_registry_tenant_latest
    ON workflow_registry (tenant, workflow_id, last_published_at DESC);
CREATE TABLE IF NOT EXISTS runs_registry (
    run_id       text PRIMARY KEY,
    tenant       text NOT NULL,
    workflow_id  text NOT NULL,
    version      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant        text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
"""


@dataclass(frozen=True)
class PublishedVersion:
    workflow_id: str
    version: str
    name: str
    definition_ref: str
    ir_ref: str
    event_id: str
    position: str


async def ensure_schema(conn: asyncpg.Connection) -> None:
    # CREATE ... IF NOT EXISTS is not safe against a concurrent twin (two processes starting
    # at once can both try to create the row type): serialise on an advisory lock.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('aob.command_api.schema'))")
        await conn.execute(DDL)


async def find_version(
    pool: asyncpg.Pool, tenant: str, workflow_id: str, version: str | None
) -> PublishedVersion | None:
    """A version of the tenant's workflow; the most recently published when ``version`` is None."""
    query = """SELECT workflow_id, version, name, definition_ref, ir_ref, event_id, position
               FROM workflow_registry WHERE workflow_id = $1 AND tenant = $2"""
    if version is None:
        row = await pool.fetchrow(
            query + " ORDER BY last_published_at DESC LIMIT 1", workflow_id, tenant
        )
    else:
        row = await pool.fetchrow(query + " AND version = $3", workflow_id, tenant, version)
    return PublishedVersion(**dict(row)) if row else None


async def record_version(pool: asyncpg.Pool, tenant: str, v: PublishedVersion) -> None:
    await pool.execute(
        """INSERT INTO workflow_registry
               (workflow_id, version, tenant, name, definition_ref, ir_ref, event_id, position)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant, workflow_id, version) DO UPDATE SET last_published_at = now(),
               event_id = EXCLUDED.event_id, position = EXCLUDED.position""",
        v.workflow_id,
        v.version,
        tenant,
        v.name,
        v.definition_ref,
        v.ir_ref,
        v.event_id,
        v.position,
    )


class Registry:
    """The lookups and writes a run's start makes, with the round trips of a burst shared
    (``infra.coalesce``): submissions that look up the same version at once share one
    query, and the runs registered at once are written by one statement."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._versions: Coalesced[_VersionKey, None, PublishedVersion | None] = Coalesced(
            self._find_versions
        )
        self._runs: Coalesced[str, _RunRow, None] = Coalesced(self._record_runs)

    async def find_version(
        self, tenant: str, workflow_id: str, version: str | None
    ) -> PublishedVersion | None:
        """As ``find_version``: asked after this call began, never before."""
        return await self._versions((tenant, workflow_id, version), None)

    async def record_run(self, run_id: str, tenant: str, workflow_id: str, version: str) -> None:
        """Register ``run_id`` as the tenant's run of that version; written when this returns
        (a keyed retry may register the same id again)."""
        await self._runs("runs", (run_id, tenant, workflow_id, version))

    async def _find_versions(
        self, key: _VersionKey, callers: list[None]
    ) -> list[PublishedVersion | None]:
        found = await find_version(self.pool, *key)
        return [found] * len(callers)

    async def _record_runs(self, _: str, rows: list[_RunRow]) -> list[None]:
        # A keyed retry registers the same run id again, maybe in the same statement: that is
        # not an error.
        await self.pool.execute(
            """INSERT INTO runs_registry (run_id, tenant, workflow_id, version)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
               ON CONFLICT (run_id) DO NOTHING""",
            *map(list, zip(*rows, strict=True)),
        )
        return [None] * len(rows)


_VersionKey = tuple[str, str, str | None]  # tenant, workflow id, version (None: the latest)
_RunRow = tuple[str, str, str, str]  # run id, tenant, workflow id, version


@dataclass(frozen=True)
class RegisteredRun:
    run_id: str
    workflow_id: str
    version: str  # the version it was submitted (or forked) at
    created_at: datetime


async def find_run(pool: asyncpg.Pool, tenant: str, run_id: str) -> RegisteredRun | None:
    """A run of the tenant's (None if it has none by that id)."""
    row = await pool.fetchrow(
        "SELECT run_id, workflow_id, version, created_at FROM runs_registry"
        " WHERE run_id = $1 AND tenant = $2",
        run_id,
        tenant,
    )
    return RegisteredRun(**dict(row)) if row else None


async def run_exists(pool: asyncpg.Pool, tenant: str, run_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT 1 FROM runs_registry WHERE run_id = $1 AND tenant = $2", run_id, tenant
        )
    )
