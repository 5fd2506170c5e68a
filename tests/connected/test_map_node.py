"""The map node on the running system: a thousand items, at most twenty running at once,
outputs in item order (checked from the events in PostgreSQL's run_events); map runs through
SIGKILLs of the coordinator and the workers, each item succeeding once; and a fork taken
halfway through a map, which reuses the items finished before its point."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from infra.settings import Settings
from infra.stack import Stack
from infra.stack.process import ensure_running, pid_alive
from tests.connected.live import pid_of, spec_of
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = [pytest.mark.connected, pytest.mark.timeout(900)]

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status error output
    nodes { id type status attempts output error itemCount }
    mapItems(node: "each", first: 1000) { index status attempts output }
  }
}
"""


def map_workflow(max_parallel: int, failure: str = "fail_fast") -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "each",
                "type": "map",
                "config": {
                    "over": "input.items",
                    "node": {
                        "type": "transform",
                        "config": {"output": {"i": "{{ index }}", "v": "{{ item * 2 }}"}},
                        # Deadlines have tests of their own: a worker killed under load must
                        # not have its items timed out and run twice.
                        "timeout_s": 900,
                    },
                    "max_parallel": max_parallel,
                    "failure": failure,
                },
            },
            {
                "id": "after",
                "type": "transform",
                "config": {"output": "{{ nodes.each.output | length }}"},
            },
        ],
        "edges": [{"from": "each", "to": "after"}],
    }


def dead(pid: int) -> None:
    assert not pid_alive(pid), f"pid {pid} still alive"


def expected(n: int) -> list[dict[str, int]]:
    return [{"i": i, "v": 2 * i} for i in range(n)]


@pytest.fixture
async def client(services: Settings, bulk_api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, bulk_api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


@pytest.fixture
async def pg(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(services.postgres_dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def finished(client: RunClient, run_id: str, after: str | None, timeout: float) -> Any:
    def check(run: dict[str, Any]) -> None:
        assert run["status"] in {"COMPLETED", "FAILED", "CANCELLED"}, run["status"]

    return await client.until(run_id, check, after, timeout=timeout)


async def item_events(pg: asyncpg.Pool, run_id: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        "SELECT seq, type, payload::text AS payload FROM run_events"
        " WHERE run_id = $1 AND payload ? 'item' AND payload->>'item' IS NOT NULL ORDER BY seq",
        run_id,
    )


def most_running(rows: list[asyncpg.Record]) -> int:
    """The most items unfinished at once, in log order: an item counts from its first
    schedule until its success (the runs here have no failures)."""
    running: set[int] = set()
    most = 0
    for r in rows:
        item = json.loads(r["payload"])["item"]
        if r["type"] == "run.node_scheduled":
            running.add(item)
        elif r["type"] == "run.node_succeeded":
            running.discard(item)
        most = max(most, len(running))
    return most


async def test_a_thousand_items_twenty_at_a_time_complete_in_order(
    client: RunClient, pg: asyncpg.Pool, unique: str
) -> None:
    run_id, position = await client.submit(
        f"map-{unique}", map_workflow(20), {"items": list(range(1000))}
    )
    run = await finished(client, run_id, position, timeout=600)
    assert run["status"] == "COMPLETED", run["error"]
    each = next(n for n in run["nodes"] if n["id"] == "each")
    assert each["type"] == "map" and each["itemCount"] == 1000
    assert each["output"] == expected(1000)
    assert run["output"] == {"after": 1000}
    assert [i["index"] for i in run["mapItems"]] == list(range(1000))
    assert {i["status"] for i in run["mapItems"]} == {"SUCCEEDED"}
    rows = await item_events(pg, run_id)
    counts = Counter(r["type"] for r in rows)
    assert counts["run.node_scheduled"] == counts["run.node_succeeded"] == 1000, counts
    assert most_running(rows) == 20


async def test_a_fork_taken_halfway_reuses_the_finished_items(
    client: RunClient, pg: asyncpg.Pool, unique: str
) -> None:
    run_id, position = await client.submit(
        f"map-fork-{unique}", map_workflow(5), {"items": list(range(40))}
    )
    run = await finished(client, run_id, position, timeout=300)
    assert run["status"] == "COMPLETED", run["error"]
    rows = await item_events(pg, run_id)
    successes = [r for r in rows if r["type"] == "run.node_succeeded"]
    point = successes[19]["seq"]  # twenty items had succeeded there; others were in flight
    done_before = {json.loads(r["payload"])["item"] for r in successes[:20]}
    r = await client.rest.post(f"/v1/runs/{run_id}/forks", json={"at": point})
    assert r.status_code == 202, r.text
    fork_id = r.json()["run_id"]
    fork = await finished(client, fork_id, r.json()["position"], timeout=300)
    assert fork["status"] == "COMPLETED", fork["error"]
    each = next(n for n in fork["nodes"] if n["id"] == "each")
    assert each["output"] == expected(40)
    fork_rows = await item_events(pg, fork_id)
    ran = {json.loads(r["payload"])["item"] for r in fork_rows if r["type"] == "run.node_scheduled"}
    assert ran == set(range(40)) - done_before  # the finished items were not run again
    assert len({i["index"] for i in fork["mapItems"]}) == 40


async def test_map_runs_survive_sigkills_of_the_coordinator_and_the_workers(
    services: Settings, client: RunClient, pg: asyncpg.Pool, unique: str
) -> None:
    runs: dict[str, str] = {}
    published = await client.rest.post(
        "/v1/workflows", json={"name": f"map-crash-{unique}", "definition": map_workflow(20)}
    )
    assert published.status_code == 201, published.text
    for _ in range(4):
        r = await client.rest.post(
            "/v1/runs",
            json={"workflow_id": f"map-crash-{unique}", "input": {"items": list(range(300))}},
        )
        assert r.status_code == 202, r.text
        runs[r.json()["run_id"]] = r.json()["position"]
    try:
        for round_, service in enumerate(
            ["coordinator", "workers", "coordinator", "workers", "coordinator"]
        ):
            # Kill once some items of the runs succeeded since the last kill, while the runs
            # are still in flight.
            base = await pg.fetchval(
                "SELECT count(*) FROM run_events WHERE run_id = ANY($1::text[])"
                " AND type = 'run.node_succeeded'",
                list(runs),
            )

            async def advanced(base: int = base) -> None:
                now = await pg.fetchval(
                    "SELECT count(*) FROM run_events WHERE run_id = ANY($1::text[])"
                    " AND type = 'run.node_succeeded'",
                    list(runs),
                )
                assert now >= base + 60, (now, base)

            await eventually(advanced, timeout=180, interval=0.1)
            done = await pg.fetchval(
                "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[]) AND status = 'COMPLETED'",
                list(runs),
            )
            assert done < len(runs), (
                f"kill {round_ + 1}: every run had finished, it would test nothing"
            )
            spec = spec_of(services, service)
            pid = pid_of(services, service)
            assert pid is not None, f"{service} is not running"
            os.kill(pid, signal.SIGKILL)
            await eventually(lambda pid=pid: dead(pid), timeout=10, interval=0.01)
            await ensure_running(services, spec)
    finally:
        await Stack(services).up()
    for run_id, position in runs.items():
        run = await finished(client, run_id, position, timeout=600)
        assert run["status"] == "COMPLETED", run["error"]
        each = next(n for n in run["nodes"] if n["id"] == "each")
        assert each["output"] == expected(300)
        rows = await item_events(pg, run_id)
        succeeded = Counter(
            json.loads(r["payload"])["item"] for r in rows if r["type"] == "run.node_succeeded"
        )
        # Each item succeeded once: a redelivered task reports under the same ids.
        assert sorted(succeeded) == list(range(300)) and set(succeeded.values()) == {1}
        assert most_running(rows) <= 20
