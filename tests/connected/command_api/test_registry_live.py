"""command_api.registry.Registry on the real PostgreSQL: a burst's run rows are written by
shared statements and every one is there, and a version published before a lookup began is
the one the lookup finds, even while other lookups of it are under way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from command_api import registry
from command_api.registry import PublishedVersion, Registry
from infra.settings import Settings

pytestmark = pytest.mark.connected


@pytest.fixture
async def pool(stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(stack.postgres_dsn, min_size=2, max_size=10)
    async with p.acquire() as conn:
        await registry.ensure_schema(conn)
    yield p
    await p.close()


class CountingPool:
    """The pool, counting the statements sent through it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    async def execute(self, query: str, *args: object) -> str:
        self.statements += 1
        return await self.pool.execute(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        self.statements += 1
        return await self.pool.fetchrow(query, *args)


def _version(workflow_id: str, version: str) -> PublishedVersion:
    return PublishedVersion(
        workflow_id, version, "wf", f"sha256:d{version}", f"sha256:i{version}", "e", "0"
    )


async def test_a_burst_of_runs_is_registered_by_shared_statements(pool: asyncpg.Pool) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    counting = CountingPool(pool)
    runs = Registry(counting)  # type: ignore[arg-type]
    run_ids = [f"r-{uuid.uuid4().hex}" for _ in range(200)]
    # a keyed retry registers its run again, in the same burst: not an error
    await asyncio.gather(
        *(runs.record_run(r, tenant, "wf-1", "v1") for r in [*run_ids, run_ids[0]])
    )
    assert counting.statements < len(run_ids) / 10
    rows = await pool.fetch(
        "SELECT run_id, workflow_id, version FROM runs_registry WHERE tenant = $1", tenant
    )
    assert sorted((r["run_id"], r["workflow_id"], r["version"]) for r in rows) == sorted(
        (r, "wf-1", "v1") for r in run_ids
    )


async def test_a_lookup_finds_what_was_published_before_it_began(pool: asyncpg.Pool) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    workflow_id = f"wf-{uuid.uuid4().hex[:10]}"
    await registry.record_version(pool, tenant, _version(workflow_id, "v1"))
    counting = CountingPool(pool)
    versions = Registry(counting)  # type: ignore[arg-type]
    lookups = [versions.find_version(tenant, workflow_id, None) for _ in range(50)]
    found = await asyncio.gather(*lookups)
    assert {f.version if f else None for f in found} == {"v1"}
    assert counting.statements < 10  # one query answered many

    # Lookups under way, then v2 published, then more lookups: those find v2.
    before = [asyncio.ensure_future(versions.find_version(tenant, workflow_id, None))]
    await asyncio.sleep(0)
    await registry.record_version(pool, tenant, _version(workflow_id, "v2"))
    after = await asyncio.gather(
        *(versions.find_version(tenant, workflow_id, None) for _ in range(20))
    )
    await asyncio.gather(*before)
    assert {f.version if f else None for f in after} == {"v2"}
    assert await versions.find_version(tenant, workflow_id, "v1") == _version(workflow_id, "v1")
    assert await versions.find_version(tenant, "wf-none", None) is None
