"""``Run.patches`` and ``Run.versions``: every field, log order, and one query each for a
whole page of runs (no N+1)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import asyncpg
import pytest

from infra.settings import Settings
from query_api.loaders import nodes_loader, patches_loader, versions_loader
from query_api.schema import schema
from tests.connected.query_api.support import T0, QueryApi, insert_run
from tests.connected.query_api.test_query_api_batching import CountingPool, _json_codecs

pytestmark = pytest.mark.connected

DEFINITION = {"nodes": [{"id": "a", "type": "noop"}], "edges": []}


async def _insert_patches(conn: asyncpg.Connection, run_id: str) -> None:
    # Written out of order: the API orders by seq (log order), not by insertion.
    await conn.execute(
        """INSERT INTO run_patches (run_id, patch_id, seq, status, reason, ops, submitted_by,
                 actor_kind, node_id, submitted_at, decided_at, current_version,
                 rejected_reasons)
           VALUES ($1, 'p2', 9, 'REJECTED', 'drop a', '[{"op": "remove", "path": "/nodes/0"}]',
                   $1 || '/a', 'agent', 'a', $2, $2, 'v1', '["node a has already run"]')""",
        run_id,
        T0,
    )
    await conn.execute(
        """INSERT INTO run_patches (run_id, patch_id, seq, status, reason, ops, base_version,
                 submitted_by, actor_kind, submitted_at, decided_at, from_version, to_version,
                 added_nodes, changed_nodes)
           VALUES ($1, 'p1', 3, 'APPLIED', 'add b', '[]', 'v0', 'key-7', 'user', $2, $2,
                   'v0', 'v1', '["b"]', '["a"]')""",
        run_id,
        T0,
    )
    await conn.executemany(
        """INSERT INTO run_versions (run_id, seq, version, definition, definition_ref, ir_ref,
                 patch_id, from_version, created_at)
           VALUES ($1, $2, $3, $4::jsonb, 'cas://d', 'cas://i', $5, $6, $7)""",
        [
            (run_id, 1, "v1", json.dumps(DEFINITION), "p1", "v0", T0),
            (run_id, 0, "v0", json.dumps(DEFINITION), None, None, T0),
        ],
    )


async def test_patches_and_versions_of_a_run(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant)
    await _insert_patches(pg, run_id)
    data = await query_api.data(
        key,
        """query($id: ID!) { run(id: $id) {
             patches { id status reason ops fromVersion toVersion baseVersion rejectedReasons
                       submittedBy { kind id } nodeId submittedAt decidedAt
                       addedNodes removedNodes changedNodes }
             versions { seq version definition definitionRef irRef patchId fromVersion
                        createdAt } } }""",
        {"id": run_id},
    )
    applied, rejected = data["run"]["patches"]
    assert applied == {
        "id": "p1",
        "status": "APPLIED",
        "reason": "add b",
        "ops": [],
        "fromVersion": "v0",
        "toVersion": "v1",
        "baseVersion": "v0",
        "rejectedReasons": [],
        "submittedBy": {"kind": "user", "id": "key-7"},
        "nodeId": None,
        "submittedAt": T0.isoformat(),
        "decidedAt": T0.isoformat(),
        "addedNodes": ["b"],
        "removedNodes": [],
        "changedNodes": ["a"],
    }
    assert (rejected["status"], rejected["rejectedReasons"]) == (
        "REJECTED",
        ["node a has already run"],
    )
    assert rejected["submittedBy"] == {"kind": "agent", "id": f"{run_id}/a"}
    assert rejected["ops"] == [{"op": "remove", "path": "/nodes/0"}]
    v0, v1 = data["run"]["versions"]
    assert (v0["seq"], v0["patchId"], v1["seq"], v1["patchId"]) == (0, None, 1, "p1")
    assert v1["definition"] == DEFINITION and v1["definitionRef"] == "cas://d"


async def test_patches_and_versions_of_many_runs_cost_one_query_each(
    stack: Settings, query_api: QueryApi, pg: asyncpg.Connection, tenant: str
) -> None:
    for _ in range(6):
        await _insert_patches(pg, await insert_run(pg, tenant))
    pool = await asyncpg.create_pool(
        stack.postgres_dsn,
        min_size=1,
        max_size=2,
        init=_json_codecs,
        server_settings={"search_path": f"{query_api.schema}, public"},
    )
    try:
        counting = CountingPool(pool)
        context = SimpleNamespace(
            pool=counting,
            tenant=tenant,
            nodes=nodes_loader(counting),
            patches=patches_loader(counting),
            versions=versions_loader(counting),
        )
        result = await schema.execute(
            "{ runs(first: 10) { edges { node { id patches(first: 10) { id } "
            "versions(first: 10) { seq } } } } }",
            context_value=context,
        )
    finally:
        await pool.close()
    assert result.errors is None, result.errors
    assert result.data is not None
    runs = result.data["runs"]["edges"]
    assert len(runs) == 6
    for r in runs:
        assert [p["id"] for p in r["node"]["patches"]] == ["p1", "p2"]
        assert [v["seq"] for v in r["node"]["versions"]] == [0, 1]
    assert counting.calls == 3  # the runs page, every run's patches, every run's versions
