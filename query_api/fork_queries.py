"""The SQL of forks (``Run.forkedFrom``, ``Run.forks``), each scoped to the caller's tenant.

Apart from ``db.py`` so that the fork fields stay one small, separate piece of the schema.
"""

from __future__ import annotations

import asyncpg

from query_api.db import RUN_COLUMNS


async def origin(pool: asyncpg.Pool, tenant: str, run_id: str) -> asyncpg.Record | None:
    """Where the run was forked from, if it is a fork of the tenant's."""
    return await pool.fetchrow(
        "SELECT forked_from, forked_at, forked_at_seq FROM runs"
        " WHERE run_id = $1 AND tenant = $2 AND forked_from IS NOT NULL",
        run_id,
        tenant,
    )


async def forks_of(
    pool: asyncpg.Pool, tenant: str, run_id: str, limit: int
) -> list[asyncpg.Record]:
    """The tenant's first ``limit`` runs forked from ``run_id``, oldest first."""
    return await pool.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE forked_from = $1 AND tenant = $2"
        " ORDER BY created_at, run_id LIMIT $3",
        run_id,
        tenant,
        limit,
    )
