"""Admission on the running system, and ``aob_admit`` itself on the real PostgreSQL.

Two command API processes (``aob up --scale command_api=2``) take 300 submissions at once
from one tenant, of three workflows (no agent node, two, three): each tier admits exactly its
limit in the minute, never one more, every refusal is a 429 that names its limit with a
``Retry-After``, and another tenant submitting meanwhile is not refused at all. Then the
statement itself: all or nothing across keys, a window that slides, no deadlock when checks
with overlapping keys race, and a counter that always equals the rows it counts.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from infra.instances import for_instance
from infra.settings import Settings
from infra.stack import Stack
from limits.admission_check import ADMIT, Admissions, Limit, ensure_schema

pytestmark = pytest.mark.connected

PER_WORKFLOW = 100
TIERS = {"light": 100, "agentic": 20, "heavy": 5}  # the default tiers' limits a minute


def agent(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "agent", "config": {"prompt": f"say {node_id}"}}


def workflow(name: str, agents: int) -> dict[str, Any]:
    nodes = [{"id": "start", "type": "noop"}, *(agent(f"a{i}") for i in range(agents))]
    edges = [{"from": "start", "to": n["id"]} for n in nodes[1:]]
    return {"name": name, "definition": {"nodes": nodes, "edges": edges}}


@pytest.fixture
async def two_command_apis(services: Settings) -> AsyncIterator[list[str]]:
    stack = Stack(services)
    await stack.up(scale={"command_api": 2})
    try:
        yield [services.command_api_url, for_instance(services, 2).command_api_url]
    finally:
        await stack.up(scale={"command_api": 1})


@pytest.fixture
async def pool(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(services.postgres_dsn, min_size=2, max_size=20)
    await ensure_schema(p)
    yield p
    await p.close()


async def test_two_command_apis_admit_exactly_each_tiers_limit_and_spare_other_tenants(
    two_command_apis: list[str], api_key: str, other_tenant_key: str, pool: asyncpg.Pool
) -> None:
    clients = [
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        for url in two_command_apis
        for key in (api_key, other_tenant_key)
    ]
    mine = [clients[0], clients[2]]  # the flooding tenant, through both processes
    other = clients[1]
    try:
        ids: dict[tuple[bool, str], str] = {}  # (the flooding tenant's?, tier) -> workflow
        for tier, agents in (("light", 0), ("agentic", 2), ("heavy", 3)):
            for c in (mine[0], other):
                r = await c.post("/v1/workflows", json=workflow(f"adm-{tier}", agents))
                assert r.status_code == 201, r.text
                ids[c is not other, tier] = r.json()["workflow_id"]

        async def submit(client: httpx.AsyncClient, tier: str) -> tuple[str, httpx.Response]:
            body = {"workflow_id": ids[client is not other, tier]}
            return tier, await client.post("/v1/runs", json=body)

        flood = [
            submit(mine[i % 2], tier) for tier in TIERS for i in range(PER_WORKFLOW)
        ]  # fmt: skip
        random.shuffle(flood)
        bystander = [submit(other, tier) for tier in TIERS]
        answers = await asyncio.gather(*flood, *bystander)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))

    flooded, spared = answers[: len(flood)], answers[len(flood) :]
    admitted = Counter(tier for tier, r in flooded if r.status_code == 202)
    assert dict(admitted) == TIERS  # exactly the limit of each tier, none over
    refusals = [(tier, r) for tier, r in flooded if r.status_code != 202]
    assert len(refusals) == 3 * PER_WORKFLOW - sum(TIERS.values())
    for tier, r in refusals:
        assert r.status_code == 429, r.text
        body = r.json()
        assert body["limit"]["name"] == f"tier:{tier}", body
        assert body["limit"]["per_minute"] == TIERS[tier]
        assert f"tier {tier} allows {TIERS[tier]} submissions a minute" in body["detail"]
        assert int(r.headers["Retry-After"]) >= 1
    # Another tenant submitting in the same moment is refused nothing.
    assert [r.status_code for _, r in spared] == [202, 202, 202], [r.text for _, r in spared]

    # Each key's counter equals the admissions it counts.
    rows = await pool.fetch(
        """SELECT w.key, w.in_window, (SELECT count(*) FROM admission_times a
                                          WHERE a.key = w.key) AS logged
             FROM admission_windows w"""
    )
    drift = {r["key"]: (r["in_window"], r["logged"]) for r in rows if r["in_window"] != r["logged"]}
    assert not drift, drift


def limit(key: str, per_minute: int) -> Limit:
    return Limit(name=key, key=key, per_minute=per_minute, says=f"{key}: {per_minute}")


async def test_a_refused_check_counts_in_none_of_its_limits(pool: asyncpg.Pool) -> None:
    a, b = (f"test:{uuid.uuid4().hex}:{n}" for n in "ab")
    admissions = Admissions(pool)
    assert await admissions.admit([limit(a, 1), limit(b, 5)]) is None
    refused = await admissions.admit([limit(a, 1), limit(b, 5)])
    assert refused is not None and refused.limit.key == a and refused.retry_after_s >= 1
    counts = await pool.fetch(
        "SELECT key, in_window FROM admission_windows WHERE key = ANY($1::text[])", [a, b]
    )
    assert {r["key"]: r["in_window"] for r in counts} == {a: 1, b: 1}
    assert await admissions.admit([limit(b, 5)]) is None  # b had room all along


async def test_the_window_slides(pool: asyncpg.Pool) -> None:
    key = f"test:{uuid.uuid4().hex}"
    window_s = 1.0

    async def admit() -> Any:
        return await pool.fetchrow(ADMIT, [key], [2], window_s, 1)

    assert [(await admit())["admitted"] for _ in range(3)] == [1, 1, 0]
    refused = await admit()
    assert not refused["admitted"] and 0 < refused["retry_after_s"] <= window_s
    await asyncio.sleep(refused["retry_after_s"] + 0.05)  # the oldest has left the window
    assert (await admit())["admitted"]


async def test_one_check_admits_as_many_as_every_key_has_room_for(pool: asyncpg.Pool) -> None:
    roomy, tight = (f"test:{uuid.uuid4().hex}:{n}" for n in ("roomy", "tight"))
    window_s = 30.0

    async def admit(wanted: int) -> Any:
        return await pool.fetchrow(ADMIT, [roomy, tight], [10, 3], window_s, wanted)

    first = await admit(2)
    assert (first["admitted"], first["refused_key"]) == (2, None)
    second = await admit(5)  # room for one more in the tight key: the first of the five
    assert (second["admitted"], second["refused_key"]) == (1, tight)
    # The tight key's oldest admission leaves first: a whole window after it was made.
    assert 0 < second["retry_after_s"] <= window_s
    third = await admit(1)
    assert (third["admitted"], third["refused_key"]) == (0, tight)
    counts = await pool.fetch(
        """SELECT w.key, w.in_window, (SELECT count(*) FROM admission_times a
                                          WHERE a.key = w.key) AS logged
             FROM admission_windows w WHERE w.key = ANY($1::text[])""",
        [roomy, tight],
    )
    assert {r["key"]: (r["in_window"], r["logged"]) for r in counts} == {
        roomy: (3, 3),
        tight: (3, 3),
    }
    with pytest.raises(asyncpg.RaiseError, match="wanted >= 1"):
        await admit(0)


async def test_a_burst_of_one_tenants_commands_admits_exactly_the_limit(
    pool: asyncpg.Pool,
) -> None:
    key = f"test:{uuid.uuid4().hex}"
    admissions = Admissions(pool)
    results = await asyncio.gather(*(admissions.admit([limit(key, 50)]) for _ in range(120)))
    assert sum(r is None for r in results) == 50
    # The first fifty to ask are the ones admitted.
    assert all(r is None for r in results[:50])
    assert all(r is not None and r.limit.key == key for r in results[50:])
    stored = await pool.fetchval("SELECT in_window FROM admission_windows WHERE key = $1", key)
    assert stored == 50


async def test_racing_checks_with_overlapping_keys_never_deadlock_nor_overadmit(
    pool: asyncpg.Pool,
) -> None:
    keys = [f"test:{uuid.uuid4().hex}:{i}" for i in range(4)]
    rng = random.Random(7)
    calls = []
    for _ in range(200):
        chosen = rng.sample(keys, rng.randint(1, 4))  # in any order: the function sorts
        calls.append([limit(k, 30) for k in chosen])
    admissions = Admissions(pool)
    results = await asyncio.gather(*(admissions.admit(c) for c in calls))  # a 40P01 raises
    per_key = Counter(
        lim.key for c, r in zip(calls, results, strict=True) if r is None for lim in c
    )
    assert max(per_key.values()) <= 30
    # Every refused call was refused by a key that was full at the end.
    full = {k for k, n in per_key.items() if n == 30}
    assert all(r.limit.key in full for r in results if r is not None)
    stored = await pool.fetch(
        "SELECT key, in_window FROM admission_windows WHERE key = ANY($1::text[])", keys
    )
    assert {r["key"]: r["in_window"] for r in stored} == {k: per_key.get(k, 0) for k in keys}
