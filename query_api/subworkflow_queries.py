"""The SQL of subworkflows (``Run.parent``, ``Run.children``), each scoped to the caller's
tenant (a child always belongs to its parent's tenant).

Apart from ``db.py`` so that the subworkflow fields stay one small, separate piece of the schema.
"""

from __future__ import annotations

import asyncpg

from query_api.db import RUN_COLUMNS


async def children_of(
    pool: asyncpg.Pool, tenant: str, run_id: str, limit: int
) -> list[asyncpg.Record]:
    """The tenant's first ``limit`` child runs of ``run_id``'s subworkflow nodes, oldest first."""
    return await pool.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE parent_run_id = $1 AND tenant = $2"
        " ORDER BY created_at, run_id LIMIT $3",
        run_id,
        tenant,
        limit,
    )
