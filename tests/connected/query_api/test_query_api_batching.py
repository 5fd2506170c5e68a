"""``runs { nodes }`` costs two queries per request, whatever the number of runs (no N+1)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from infra.settings import Settings
from query_api.loaders import nodes_loader
from query_api.schema import schema
from tests.connected.query_api.support import QueryApi, insert_node, insert_run

pytestmark = pytest.mark.connected


class CountingPool:
    """The real pool, with its round trips counted."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.pool, name)
        if name.startswith("fetch"):
            self.calls += 1
        return attr


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def test_nodes_of_many_runs_are_loaded_in_one_query(
    stack: Settings, query_api: QueryApi, pg: asyncpg.Connection, tenant: str
) -> None:
    for _ in range(12):
        run_id = await insert_run(pg, tenant)
        for order in range(3):
            await insert_node(pg, run_id, f"n{order}", output={"i": order}, order=order)
    pool = await asyncpg.create_pool(
        stack.postgres_dsn,
        min_size=1,
        max_size=2,
        init=_json_codecs,
        server_settings={"search_path": f"{query_api.schema}, public"},
    )
    try:
        counting = CountingPool(pool)
        context = SimpleNamespace(pool=counting, tenant=tenant, nodes=nodes_loader(counting))
        result = await schema.execute(
            "{ runs(first: 20) { edges { node { id nodes(first: 10) { id output } } } } }",
            context_value=context,
        )
    finally:
        await pool.close()
    assert result.errors is None, result.errors
    assert result.data is not None
    runs = result.data["runs"]["edges"]
    assert len(runs) == 12
    assert all([n["output"]["i"] for n in r["node"]["nodes"]] == [0, 1, 2] for r in runs)
    assert counting.calls == 2  # the runs page, then every run's nodes at once
