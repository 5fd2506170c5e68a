"""Fair execution on the running system.

- One tenant floods 500 runs of an http node whose target answers in 2 s; it may have 16
  http attempts running at once in the worker, so its backlog takes a minute to drain.
  Another tenant's 3-node run, submitted right behind the whole burst in the same
  partitions, and another once the flood holds its slots, finish while most of the flood
  still waits (they are not served after the flood), the flood's waiting nodes say why in
  GraphQL, and every one of the 500 runs completes. Their times beside the unloaded one are
  printed.
- A node with ``"concurrency": {"key": "{{ input.customer }}", "limit": 2}``, run by two
  worker processes: from the events, never more than 2 attempts of one customer at a time,
  while the other customer's attempts go on meanwhile.

The times are printed as figures, not asserted: what is asserted is the order of things.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from auth import issue_key
from infra.settings import Settings
from infra.stack import Stack
from limits.admission import unthrottled
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from tests.helpers import eventually
from tests.http_support import LoopbackServer

pytestmark = [pytest.mark.connected, pytest.mark.timeout(600)]

FLOOD = 500
SLOTS = 16  # the default: a tenant's http attempts at once in one worker process
SUBMITTING = 16
UNLOADED_RUNS = 3
DURING_RUNS = 5  # the other tenant's runs while the flood holds its slots
CYCLE_S = 2.0  # the flood's attempts take 2 s: they end and start in waves

NODE_WAITING = """query($id: ID!) { run(id: $id) { nodes { id status waitingReason } } }"""


@pytest.fixture
async def pg(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(services.postgres_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


class Tenant:
    def __init__(self, services: Settings, name: str, key: str) -> None:
        self.name = name
        headers = {"Authorization": f"Bearer {key}"}
        self.rest = httpx.AsyncClient(
            base_url=services.command_api_url, headers=headers, timeout=60
        )
        self.gql = httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=60)

    async def publish(self, name: str, definition: dict[str, Any]) -> str:
        r = await self.rest.post("/v1/workflows", json={"name": name, "definition": definition})
        assert r.status_code == 201, r.text
        workflow_id: str = r.json()["workflow_id"]
        return workflow_id

    async def submit(self, workflow_id: str, run_input: Any = None) -> str:
        r = await self.rest.post("/v1/runs", json={"workflow_id": workflow_id, "input": run_input})
        assert r.status_code == 202, r.text
        run_id: str = r.json()["run_id"]
        return run_id

    async def close(self) -> None:
        await self.rest.aclose()
        await self.gql.aclose()


async def tenant(services: Settings, pg: asyncpg.Pool, prefix: str) -> Tenant:
    """A fresh tenant whose submissions are not limited (this test is about execution)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    await LimitsStore(pg).put(name, TenantLimits(admission=unthrottled()))
    return Tenant(services, name, await issue_key(services.postgres_dsn, name))


async def finished(pg: asyncpg.Pool, run_ids: list[str]) -> int:
    n: int = await pg.fetchval(
        "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[]) AND status = 'COMPLETED'",
        run_ids,
    )
    return n


async def started(pg: asyncpg.Pool, run_ids: list[str]) -> int:
    """How many of ``run_ids`` the coordinator has started (or finished)."""
    n: int = await pg.fetchval(
        "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[]) AND status <> 'PENDING'",
        run_ids,
    )
    return n


async def completed_in(pg: asyncpg.Pool, run_id: str, timeout: float) -> float:
    """Seconds from the run's creation to its completion, once it completed."""

    async def done() -> float:
        row = await pg.fetchrow(
            "SELECT status, created_at, finished_at FROM runs WHERE run_id = $1", run_id
        )
        assert row is not None and row["status"] == "COMPLETED", row
        took: float = (row["finished_at"] - row["created_at"]).total_seconds()
        return took

    return await eventually(done, timeout=timeout, interval=0.05)


async def timeline_ms(pg: asyncpg.Pool, run_id: str) -> list[str]:
    """The run's events as "ms type node", from its first event."""
    events = await pg.fetch(
        "SELECT type, occurred_at, payload->>'node_id' AS node FROM run_events"
        " WHERE run_id = $1 ORDER BY seq",
        run_id,
    )
    first = events[0]["occurred_at"]
    return [
        f"{(e['occurred_at'] - first).total_seconds() * 1000:.0f} {e['type']} {e['node'] or ''}"
        for e in events
    ]


def three_nodes(target: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "start", "type": "noop"},
            {"id": "fetch", "type": "http", "config": {"url": f"{target}/json"}},
            {"id": "done", "type": "noop"},
        ],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "done"}],
    }


async def test_a_flooding_tenant_does_not_hold_up_another_tenants_run(
    services: Settings,
    pg: asyncpg.Pool,
    live_http_target: LoopbackServer,
    figures: list[dict[str, Any]],
) -> None:
    flooder = await tenant(services, pg, "flood")
    calm = await tenant(services, pg, "calm")
    try:
        slow = await flooder.publish(
            "slow",
            {
                "nodes": [
                    {
                        "id": "call",
                        "type": "http",
                        "timeout_s": 600,
                        "config": {"url": f"{live_http_target.base}/sleep?s=2"},
                    }
                ],
                "edges": [],
            },
        )
        short = await calm.publish("three", three_nodes(live_http_target.base))
        # Its unloaded time: the median of three runs one after another (the first also
        # pays for what a first run warms up: connections, compiled templates).
        alone = [await calm.submit(short) for _ in range(1)]
        for _ in range(UNLOADED_RUNS - 1):
            await completed_in(pg, alone[-1], timeout=60)
            alone.append(await calm.submit(short))
        unloaded = statistics.median([await completed_in(pg, r, timeout=60) for r in alone])

        slots = asyncio.Semaphore(SUBMITTING)

        async def one() -> str:
            async with slots:
                return await flooder.submit(slow)

        flood = await asyncio.gather(*(one() for _ in range(FLOOD)))
        # Right behind the burst: its records are in the log after every run of the
        # flood, and the machine is still busy taking the burst in.
        behind = await calm.submit(short)
        loaded = await completed_in(pg, behind, timeout=120)

        # While the flood holds its tenant's slots: every run of it started, most of their
        # nodes waiting for a slot in the worker, for a minute to come. Its attempts end
        # and start in waves of 16 every 2 s, so runs are submitted across such a cycle,
        # one every CYCLE_S / DURING_RUNS, and their median is set beside the unloaded one.
        async def flood_started() -> None:
            assert await started(pg, flood) == FLOOD

        await eventually(flood_started, timeout=120, interval=0.1)
        loop = asyncio.get_running_loop()
        first = loop.time()
        during: list[str] = []
        took: list[float] = []
        for i in range(DURING_RUNS):
            await asyncio.sleep(max(0.0, first + i * CYCLE_S / DURING_RUNS - loop.time()))
            during.append(await calm.submit(short))
            took.append(await completed_in(pg, during[-1], timeout=120))
        held_up = statistics.median(took)
        done_by_then = await finished(pg, flood)
        # Served beside the flood, not after it: at 16 at a time, 2 s each, the flood
        # needs a minute; most of it was still to come.
        assert done_by_then < FLOOD // 2, (done_by_then, loaded, took)

        # The flood's waiting nodes say why they are still SCHEDULED.
        reason = f"tenant {flooder.name} has {SLOTS} of {SLOTS} http slots in use on this worker"
        waiting = await pg.fetch(
            "SELECT run_id FROM node_executions WHERE run_id = ANY($1::text[])"
            " AND status = 'SCHEDULED' AND waiting_reason = $2 LIMIT 1",
            flood,
            reason,
        )
        assert waiting, "no node of the flood says that it waits for its tenant's slots"
        r = await flooder.gql.post(
            "/graphql", json={"query": NODE_WAITING, "variables": {"id": waiting[0]["run_id"]}}
        )
        (node,) = r.json()["data"]["run"]["nodes"]
        assert node["status"] == "SCHEDULED" and node["waitingReason"] == reason, node

        # And nothing of the flood is lost.
        async def all_done() -> None:
            assert await finished(pg, flood) == FLOOD

        await eventually(all_done, timeout=300, interval=1)
    finally:
        await flooder.close()
        await calm.close()
    # Where the other tenant's run spent its time: waiting in the worker for its http node,
    # or behind the flood's records in the log, in the coordinator.
    # Its start is in the read model whether its own event or its outcome told it.
    fetch = await pg.fetchrow(
        "SELECT scheduled_at, started_at FROM node_executions WHERE run_id = $1"
        " AND node_id = 'fetch'",
        behind,
    )
    in_worker = fetch["started_at"] - fetch["scheduled_at"]
    row = {
        "test": "fair_execution_flood",
        "flood_runs": FLOOD,
        "other_tenant_run_s_unloaded": round(unloaded, 3),
        "other_tenant_run_s_while_the_flood_holds_its_slots": round(held_up, 3),
        "other_tenant_runs_s_while_the_flood_holds_its_slots": [round(t, 3) for t in took],
        "other_tenant_run_s_right_behind_the_burst": round(loaded, 3),
        "flood_runs_done_when_it_finished": done_by_then,
        "other_tenant_http_node_waited_in_worker_s": round(in_worker.total_seconds(), 3),
        "other_tenant_timeline_ms_unloaded": await timeline_ms(pg, alone[-1]),
        "other_tenant_timeline_ms_while_the_flood_holds_its_slots": [
            await timeline_ms(pg, run_id) for run_id in during
        ],
        "other_tenant_timeline_ms_right_behind_the_burst": await timeline_ms(pg, behind),
    }
    print(json.dumps(row))
    figures.append(row)


@pytest.fixture
async def two_workers(services: Settings) -> AsyncIterator[None]:
    stack = Stack(services)
    await stack.up(scale={"workers": 2})
    try:
        yield
    finally:
        await stack.up(scale={"workers": 1})


KEYED_RUNS = {"c1": 12, "c2": 8}


async def test_a_concurrency_key_holds_its_limit_across_worker_processes(
    services: Settings, pg: asyncpg.Pool, two_workers: None, live_http_target: LoopbackServer
) -> None:
    keyed = await tenant(services, pg, "keyed")
    try:
        workflow = await keyed.publish(
            "keyed",
            {
                "nodes": [
                    {
                        "id": "call",
                        "type": "http",
                        "timeout_s": 600,
                        "config": {"url": f"{live_http_target.base}/sleep?s=0.5"},
                        "concurrency": {"key": "{{ input.customer }}", "limit": 2},
                    }
                ],
                "edges": [],
            },
        )
        runs = {
            await keyed.submit(workflow, {"customer": customer}): customer
            for customer, count in KEYED_RUNS.items()
            for _ in range(count)
        }

        async def all_done() -> None:
            assert await finished(pg, list(runs)) == len(runs)

        await eventually(all_done, timeout=180, interval=0.5)
    finally:
        await keyed.close()

    rows = await pg.fetch(
        "SELECT run_id, type, occurred_at, payload FROM run_events WHERE run_id = ANY($1::text[])"
        " AND type IN ('run.node_started', 'run.node_succeeded', 'run.node_queued')",
        list(runs),
    )
    spans: dict[str, dict[str, list[datetime]]] = {c: {} for c in KEYED_RUNS}
    queued = set()
    for r in rows:
        customer = runs[r["run_id"]]
        if r["type"] == "run.node_queued":
            payload = json.loads(r["payload"])
            if payload["waiting_for"] == "concurrency_key":
                queued.add(customer)
            continue
        spans[customer].setdefault(r["run_id"], []).append(r["occurred_at"])
    intervals = {
        c: [(min(ts), max(ts)) for ts in by_run.values() if len(ts) == 2]
        for c, by_run in spans.items()
    }
    assert {c: len(v) for c, v in intervals.items()} == KEYED_RUNS

    def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
        edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        running = peak = 0
        for _, step in edges:  # at equal times an end (-1) sorts before a start
            running += step
            peak = max(peak, running)
        return peak

    assert most_at_once(intervals["c1"]) == 2, intervals["c1"]  # the limit, and no more
    assert most_at_once(intervals["c2"]) <= 2
    # The other key went on meanwhile: more than 2 attempts ran at once across the keys.
    assert most_at_once(intervals["c1"] + intervals["c2"]) > 2
    assert "c1" in queued  # and the waiting said why
