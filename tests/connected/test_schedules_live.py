"""Schedules on the running system: a schedule every 2 s fires at its moments, through a
SIGKILL and a restart of the coordinator. Every moment before the kill and after the restart
started exactly one run (the run whose id the moment derives); the moments of the downtime
started at most ``schedule_catch_up`` (1) runs between them, late, and the rest are recorded
as missed; no run of the workflow is there that no moment explains; no run started before its
moment. Pausing stops the firings."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from infra.settings import Settings
from infra.stack.process import ensure_running, pid_alive
from processors.schedule_clock import schedule_run_id
from tests.connected.live import pid_of, spec_of
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = [pytest.mark.connected, pytest.mark.timeout(300)]

RUN = "query Run($id: ID!, $after: String) { run(id: $id, after: $after) { status } }"
RUNS = """
query Runs($wf: ID!) {
  runs(first: 200, filter: {workflowId: $wf}) { edges { node { id createdAt status } } }
}
"""
EVERY_S = 2
CATCH_UP = 1  # the coordinator's default (AOB_COORDINATOR_SCHEDULE_CATCH_UP)
DOWN_S = 9  # the coordinator stays dead this long: four or five moments


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


def dead(pid: int) -> None:
    assert not pid_alive(pid), f"pid {pid} still alive"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def firings(client: RunClient, schedule_id: str) -> list[dict[str, Any]]:
    r = await client.rest.get(f"/v1/schedules/{schedule_id}")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["firings"]
    return found


async def fired_after(client: RunClient, schedule_id: str, since: datetime, n: int) -> None:
    async def enough() -> None:
        done = [
            f
            for f in await firings(client, schedule_id)
            if f["outcome"] == "fired" and moment(f["recorded_at"]) > since
        ]
        assert len(done) >= n, done

    await eventually(enough, timeout=90, interval=0.5)


async def test_a_schedule_every_2s_fires_each_moment_once_across_a_coordinator_restart(
    services: Settings, client: RunClient, unique: str
) -> None:
    name = f"ticking-{unique[:8]}"
    definition = {"nodes": [{"id": "tick", "type": "noop"}]}
    r = await client.rest.post("/v1/workflows", json={"name": name, "definition": definition})
    assert r.status_code == 201, r.text
    workflow_id = r.json()["workflow_id"]
    r = await client.rest.post(
        "/v1/schedules", json={"workflow": name, "every": f"{EVERY_S}s", "input": {"n": 1}}
    )
    assert r.status_code == 201, r.text
    schedule_id = r.json()["schedule_id"]
    created = moment(r.json()["created_at"])

    await fired_after(client, schedule_id, created, 3)

    spec = spec_of(services, "coordinator")
    pid = pid_of(services, "coordinator")
    assert pid is not None, "the coordinator is not running"
    os.kill(pid, signal.SIGKILL)
    killed = datetime.now().astimezone()
    await eventually(lambda: dead(pid), timeout=10, interval=0.01)
    await asyncio.sleep(DOWN_S)  # moments come and go with no clock
    restarted = datetime.now().astimezone()
    await ensure_running(services, spec)

    await fired_after(client, schedule_id, restarted, 3)
    r = await client.rest.post(f"/v1/schedules/{schedule_id}/pause")
    assert r.status_code == 200, r.text
    paused = datetime.now().astimezone()

    rows = await firings(client, schedule_id)
    fired = sorted(moment(f["due_at"]) for f in rows if f["outcome"] == "fired")
    missed = [f for f in rows if f["outcome"] == "missed"]
    assert all(f["outcome"] in ("fired", "missed") for f in rows), rows  # overlap: allow
    step = timedelta(seconds=EVERY_S)

    # Every moment from the first to the last is fired or missed, once: none lost.
    covered = list(fired)
    for m in missed:
        covered += [moment(m["due_at"]) - step * i for i in range(m["count"])]
    first, last = min(covered), max(covered)
    expected = [first + step * i for i in range(int((last - first) / step) + 1)]
    assert sorted(covered) == expected, rows

    # Moments missed only while no clock ran (from the last firing before the kill to the
    # restarted clock's first look); of those, at most CATCH_UP fired, the latest.
    last_before = max(moment(f["due_at"]) for f in rows if moment(f["recorded_at"]) < killed)
    back = min(moment(f["recorded_at"]) for f in rows if moment(f["recorded_at"]) > killed)
    assert back > restarted
    down = [m for m in expected if last_before < m <= back]
    assert len(down) >= 3, (killed, restarted, rows)
    assert all(last_before < moment(m["due_at"]) <= back for m in missed), rows
    late = [m for m in fired if last_before < m <= back]
    assert len(late) <= CATCH_UP, (late, rows)
    assert late == down[len(down) - len(late) :], (late, down)  # the latest ones
    assert sum(m["count"] for m in missed) + len(late) == len(down), rows

    # Each fired moment started exactly its own run, never early; no other run exists.
    want = {schedule_run_id(schedule_id, m): m for m in fired}

    async def all_runs() -> list[dict[str, Any]]:
        data = await client.query(RUNS, {"wf": workflow_id})
        nodes = [e["node"] for e in data["runs"]["edges"]]
        assert {n["id"] for n in nodes} >= set(want), (sorted(want), nodes)
        return nodes

    runs = await eventually(all_runs, timeout=60)
    assert sorted(n["id"] for n in runs) == sorted(want), runs  # none doubled, none extra
    for run in runs:
        assert moment(run["createdAt"]) >= want[run["id"]], run

    # Paused: nothing fires after it (the last firing may have been on its way).
    await asyncio.sleep(3 * EVERY_S)
    after = [f for f in await firings(client, schedule_id) if moment(f["due_at"]) > paused + step]
    assert after == [], after


async def test_overlap_skip_records_moments_whose_previous_run_is_unfinished(
    client: RunClient, unique: str
) -> None:
    name = f"slow-{unique[:8]}"
    # A run of it never finishes on its own: it waits for a person.
    definition = {"nodes": [{"id": "gate", "type": "hitl", "config": {"prompt": "go?"}}]}
    r = await client.rest.post("/v1/workflows", json={"name": name, "definition": definition})
    assert r.status_code == 201, r.text
    r = await client.rest.post(
        "/v1/schedules", json={"workflow": name, "every": f"{EVERY_S}s", "overlap": "skip"}
    )
    assert r.status_code == 201, r.text
    schedule_id = r.json()["schedule_id"]

    async def skipped_twice() -> list[dict[str, Any]]:
        rows = await firings(client, schedule_id)
        assert len([f for f in rows if f["outcome"] == "skipped"]) >= 2, rows
        return rows

    rows = await eventually(skipped_twice, timeout=60, interval=0.5)
    assert (await client.rest.delete(f"/v1/schedules/{schedule_id}")).status_code == 204
    fired = [f for f in rows if f["outcome"] == "fired"]
    assert len(fired) == 1, rows  # the first run is still waiting: nothing else started
    first = fired[0]
    for f in rows:
        if f["outcome"] == "skipped":
            assert moment(f["due_at"]) > moment(first["due_at"]), rows
            assert first["run_id"] in f["reason"] and "overlap: skip" in f["reason"], f
