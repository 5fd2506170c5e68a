"""The query API over real HTTP, against the real Postgres and MinIO."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest

from cas import ContentStore
from infra.settings import Settings
from read_model.channels import PROGRESS_CHANNEL
from read_model.offsets import DEFAULT_PROJECTION
from schemas.topics import RUN_EVENTS
from tests.connected.query_api.support import (
    CATCH_UP_TIMEOUT_S,
    T0,
    QueryApi,
    insert_events,
    insert_node,
    insert_run,
)

pytestmark = pytest.mark.connected

RUN_QUERY = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status workflowId workflowName version input output error
    createdAt updatedAt startedAt finishedAt
    nodes { id type status attempts startedAt finishedAt output outputRef error }
    patches { id } approvals { nodeId }
  }
}
"""


async def test_run_with_nodes_and_outputs(
    stack: Settings, query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant, input={"n": 1}, status="COMPLETED", output={"ok": 1})
    await insert_node(pg, run_id, "inline", output={"small": True}, output_ref="cas://x", order=0)
    big = {"rows": [{"i": i, "text": "x" * 50} for i in range(200)], "id": uuid.uuid4().hex}
    cas = ContentStore.from_settings(stack)
    ref, _ = await cas.put_json(big)
    await insert_node(pg, run_id, "in_cas", output=None, output_ref=ref, order=1)
    await insert_node(pg, run_id, "failed", status="FAILED", error="boom", order=2)

    run = (await query_api.data(key, RUN_QUERY, {"id": run_id}))["run"]

    assert run["id"] == run_id
    assert run["status"] == "COMPLETED"
    assert run["input"] == {"n": 1}
    assert run["output"] == {"ok": 1}
    assert run["workflowName"] == "wf-name"
    assert run["createdAt"].startswith("2026-01-01T00:00:00")
    assert run["patches"] == [] and run["approvals"] == []
    nodes = {n["id"]: n for n in run["nodes"]}
    assert [n["id"] for n in run["nodes"]] == ["inline", "in_cas", "failed"]
    assert nodes["inline"]["output"] == {"small": True}
    assert nodes["in_cas"]["output"] == big  # resolved from the CAS
    assert nodes["in_cas"]["outputRef"] == ref
    assert nodes["failed"]["status"] == "FAILED"
    assert nodes["failed"]["error"] == "boom"
    assert nodes["failed"]["output"] is None


async def test_events_are_paged_in_log_order(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant)
    ids = await insert_events(pg, run_id, 7)
    query = """query($id: ID!, $after: String) { run(id: $id) {
        events(first: 3, after: $after) {
          edges { cursor node { id seq type occurredAt causationId actor payload } }
          pageInfo { hasNextPage endCursor } } } }"""
    seen, pages, after = [], 0, None
    while True:
        page = (await query_api.data(key, query, {"id": run_id, "after": after}))["run"]["events"]
        pages += 1
        seen += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert [e["id"] for e in seen] == ids
    assert [e["seq"] for e in seen] == list(range(1, 8))
    assert seen[0]["payload"] == {"n": 1}
    assert seen[0]["actor"]["id"] == "coordinator"


async def test_runs_filter_and_keyset_pagination(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    # Two runs share a created_at: the run_id breaks the tie, so no page skips or repeats.
    specs = [
        ("a", "RUNNING", T0),
        ("b", "COMPLETED", T0 + timedelta(seconds=1)),
        ("a", "COMPLETED", T0 + timedelta(seconds=1)),
        ("b", "FAILED", T0 + timedelta(seconds=2)),
        ("a", "COMPLETED", T0 + timedelta(seconds=3)),
    ]
    made = [
        (await insert_run(pg, tenant, workflow_id=wf, status=st, created_at=at), wf, st, at)
        for wf, st, at in specs
    ]
    newest_first = [r[0] for r in sorted(made, key=lambda r: (r[3], r[0]), reverse=True)]
    query = """query($filter: RunFilter, $first: Int!, $after: String) {
        runs(filter: $filter, first: $first, after: $after) {
          edges { cursor node { id status workflowId } }
          pageInfo { hasNextPage endCursor } } }"""

    async def all_pages(filter_: dict[str, str] | None, first: int) -> list[str]:
        ids: list[str] = []
        after = None
        for _ in range(10):
            page = (
                await query_api.data(
                    key, query, {"filter": filter_, "first": first, "after": after}
                )
            )["runs"]
            ids += [e["node"]["id"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return ids
            after = page["pageInfo"]["endCursor"]
        raise AssertionError("pagination did not end")

    assert await all_pages(None, 2) == newest_first
    assert await all_pages(None, 500) == newest_first
    workflow_of = {m[0]: m[1] for m in made}
    status_of = {m[0]: m[2] for m in made}
    completed = [r for r in newest_first if status_of[r] == "COMPLETED"]
    assert await all_pages({"status": "COMPLETED"}, 1) == completed
    of_b = [r for r in newest_first if workflow_of[r] == "b"]
    assert await all_pages({"workflowId": "b"}, 1) == of_b
    assert await all_pages({"workflowId": "b", "status": "FAILED"}, 5) == of_b[:1]

    response = await query_api.query(key, query, {"first": 501})
    assert response.status_code == 200
    assert "first must be between 1 and 500" in response.json()["errors"][0]["message"]


async def test_workflows_with_versions(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str, other_key: str
) -> None:
    for i, name in enumerate(["beta", "alpha", "gamma"]):
        workflow_id = f"wf-{uuid.uuid4().hex}"
        await pg.execute(
            """INSERT INTO workflows (workflow_id, tenant, name, latest_version, created_at,
                                      updated_at) VALUES ($1, $2, $3, 'v2', $4, $4)""",
            workflow_id,
            tenant,
            name,
            T0 + timedelta(seconds=i),
        )
        for n, version in enumerate(["v1", "v2"]):
            await pg.execute(
                """INSERT INTO workflow_versions (tenant, workflow_id, version, definition,
                       definition_ref, ir_ref, published_at, event_id)
                   VALUES ($6, $1, $2, $3::jsonb, 'cas://d', 'cas://i', $4, $5)""",
                workflow_id,
                version,
                f'{{"nodes": [{{"id": "n{n}", "type": "noop"}}], "edges": []}}',
                T0 + timedelta(seconds=n),
                uuid.uuid4().hex,
                tenant,
            )
    query = """query($after: String) { workflows(first: 2, after: $after) {
        edges { cursor node { id name latestVersion versions { version definition publishedAt } } }
        pageInfo { hasNextPage endCursor } } }"""
    first = (await query_api.data(key, query))["workflows"]
    second = (await query_api.data(key, query, {"after": first["pageInfo"]["endCursor"]}))[
        "workflows"
    ]
    names = [e["node"]["name"] for e in first["edges"] + second["edges"]]
    assert names == ["alpha", "beta", "gamma"]
    assert first["pageInfo"]["hasNextPage"] and not second["pageInfo"]["hasNextPage"]
    alpha = first["edges"][0]["node"]
    assert alpha["latestVersion"] == "v2"
    assert [v["version"] for v in alpha["versions"]] == ["v1", "v2"]
    assert alpha["versions"][1]["definition"]["nodes"][0]["id"] == "n1"

    one = """query($id: ID!) { workflow(id: $id) { id name } }"""
    assert (await query_api.data(key, one, {"id": alpha["id"]}))["workflow"]["name"] == "alpha"
    assert (await query_api.data(other_key, one, {"id": alpha["id"]}))["workflow"] is None
    assert (await query_api.data(other_key, query))["workflows"]["edges"] == []


async def test_another_tenant_sees_nothing(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str, other_key: str
) -> None:
    run_id = await insert_run(pg, tenant)
    assert (await query_api.data(key, RUN_QUERY, {"id": run_id}))["run"]["id"] == run_id
    assert (await query_api.data(other_key, RUN_QUERY, {"id": run_id}))["run"] is None
    runs = await query_api.data(other_key, "{ runs { edges { node { id } } } }")
    assert runs["runs"]["edges"] == []


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nope", "Bearer aob_000000000000_" + "x" * 43, "Basic abc"],
)
async def test_no_valid_key_is_a_401(query_api: QueryApi, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{query_api.url}/graphql",
            json={"query": "{ runs { edges { cursor } } }"},
            headers=headers,
        )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "API key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"


async def test_graphiql_page_loads_without_a_key_but_runs_nothing(query_api: QueryApi) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{query_api.url}/graphql", headers={"Accept": "text/html"})
        get_query = await client.get(
            f"{query_api.url}/graphql",
            params={"query": "{ runs { edges { cursor } } }"},
            headers={"Accept": "text/html"},
        )
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    assert get_query.status_code == 401


async def test_oversized_body_is_a_413(query_api: QueryApi, key: str) -> None:
    response = await query_api.query(key, "{ __typename }" + " " * 300_000)
    assert response.status_code == 413


# --- read your writes --------------------------------------------------------------------


async def _set_offset(
    pg: asyncpg.Connection, partition: int, next_offset: int, *, notify: bool = True
) -> None:
    async with pg.transaction():
        await pg.execute(
            """INSERT INTO projection_offsets (projection, topic, partition, next_offset)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = $4""",
            DEFAULT_PROJECTION,
            RUN_EVENTS,
            partition,
            next_offset,
        )
        if notify:
            await pg.execute("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, DEFAULT_PROJECTION)


async def test_after_a_reached_position_answers_at_once(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant)
    await _set_offset(pg, partition=0, next_offset=100)
    started = time.perf_counter()
    run = await query_api.data(key, RUN_QUERY, {"id": run_id, "after": f"{RUN_EVENTS}:0:99"})
    assert run["run"]["id"] == run_id
    # Not a speed assertion: far below the catch-up timeout means it did not wait for it.
    assert time.perf_counter() - started < CATCH_UP_TIMEOUT_S / 2


@pytest.mark.parametrize("notify", [True, False], ids=["notified", "polled"])
async def test_after_a_future_position_waits_for_the_projector(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str, notify: bool
) -> None:
    partition = 1 if notify else 2
    await _set_offset(pg, partition=partition, next_offset=10)
    token = f"{RUN_EVENTS}:{partition}:10"  # the projector has consumed up to offset 9 only
    run_id = f"run-{uuid.uuid4().hex}"
    pending = asyncio.create_task(query_api.data(key, RUN_QUERY, {"id": run_id, "after": token}))
    # Not a wait for a state: the claim is that nothing comes while the position is ahead,
    # so the test must give the query API the time in which it would (wrongly) answer.
    await asyncio.sleep(0.5)
    assert not pending.done(), "answered before the read side reached the position"
    # As the projector does: the event's rows and the offset past it in one transaction.
    async with pg.transaction():
        await insert_run(pg, tenant, run_id=run_id)
        await _set_offset(pg, partition=partition, next_offset=11, notify=notify)
    committed = time.perf_counter()
    run = await asyncio.wait_for(pending, timeout=CATCH_UP_TIMEOUT_S)
    print(f"{notify=}: answered {1000 * (time.perf_counter() - committed):.1f} ms after the commit")
    assert run["run"]["id"] == run_id


async def test_after_a_position_never_reached_gives_up(query_api: QueryApi, key: str) -> None:
    token = f"{RUN_EVENTS}:3:{10**12}"
    response = await query_api.query(key, RUN_QUERY, {"id": "x", "after": token})
    assert response.status_code == 200
    errors = response.json()["errors"]
    assert errors[0]["message"] == (
        f"the read side has not caught up with position {token} yet; retry"
    )


@pytest.mark.parametrize("token", ["garbage", f"{RUN_EVENTS}:one:2", "aob.tasks.http:0:1"])
async def test_malformed_position_is_an_error(query_api: QueryApi, key: str, token: str) -> None:
    response = await query_api.query(key, RUN_QUERY, {"id": "x", "after": token})
    assert response.status_code == 200
    assert "malformed position" in response.json()["errors"][0]["message"]
