"""Tenants for tests of the running system."""

from __future__ import annotations

import asyncpg

from auth import issue_key
from cli.bench_commands import raise_limits
from infra.settings import Settings


async def unthrottled_key(settings: Settings, tenant: str) -> str:
    """An API key of ``tenant`` whose limits are the bench's (admission and a worker's slots
    out of reach): for tests that submit in bulk, so that what they test is not the limits
    (``tests/connected/test_admission_live.py`` and ``workers/test_fair_execution_live.py``
    test those)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await raise_limits(conn, tenant)
    finally:
        await conn.close()
    return await issue_key(settings.postgres_dsn, tenant)
