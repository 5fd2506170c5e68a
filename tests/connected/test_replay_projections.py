"""``aob replay projections`` on the running system: after 1,000 runs of every kind the
rebuilt read models are identical to the live ones; queries keep answering, complete, while
it runs and across the swap; the live projector goes on projecting; an interrupted rebuild
leaves the live tables alone and its half-built schema is dropped.

The comparison reads the whole log of a stack that other tests may have written to before:
it waits until the log is quiet and projected, and fails saying so if the log moves while
the two dumps are taken.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_metadata import topic_partitions
from infra.settings import Settings
from projections.runner import TOPICS
from read_model import schema as db
from read_model.offsets import DEFAULT_PROJECTION
from replay.dump import Dump, differences, dump_schema
from replay.rebuild import REBUILD_PREFIX
from tests.connected.run_client import RunClient, http_clients, statuses
from tests.connected.tenants import unthrottled_key
from tests.connected.test_patches import GATED  # start -> gate (hitl) -> b -> c
from tests.helpers import eventually

pytestmark = pytest.mark.connected

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AOB = Path(sys.executable).parent / "aob"  # the command a user runs, from this environment

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    status version error
    nodes { id status attempts output error }
    patches { id status }
    approvals { nodeId status decision }
    events(first: 200) { edges { node { id type } } }
  }
}
"""
RUNS = """
query Runs($after: String) {
  runs(first: 500, after: $after) {
    edges { node { id status workflowId } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

CHAIN: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "noop"},
        {"id": "double", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
        {
            "id": "label",
            "type": "transform",
            "config": {"output": {"label": "n={{ nodes.double.output.n }}"}},
        },
    ],
    "edges": [{"from": "start", "to": "double"}, {"from": "double", "to": "label"}],
}
FAILING: dict[str, Any] = {
    "nodes": [
        {"id": "first", "type": "noop"},
        {
            "id": "bad",
            "type": "transform",
            "config": {"output": {"x": "{{ input.missing.deeper }}"}},
            "retry": {"max_attempts": 2, "backoff_s": 0.05},
        },
        {"id": "after", "type": "noop"},
    ],
    "edges": [{"from": "first", "to": "bad"}, {"from": "bad", "to": "after"}],
}
REVIEW: dict[str, Any] = {
    "nodes": [
        {"id": "prepare", "type": "transform", "config": {"output": {"items": 3}}},
        {"id": "review", "type": "hitl", "config": {"prompt": "Ship {{ input.n }}?"}},
        {"id": "publish", "type": "noop"},
        {"id": "drop", "type": "noop"},
    ],
    "edges": [
        {"from": "prepare", "to": "review"},
        {"from": "review", "to": "publish", "when": "approved"},
        {"from": "review", "to": "drop", "when": "rejected"},
    ],
}
INSERT_X = [
    {"op": "remove", "path": "/edges/2"},  # b -> c
    {
        "op": "add",
        "path": "/nodes/-",
        "value": {"id": "x", "type": "transform", "config": {"output": {"saw": "x"}}},
    },
    {"op": "add", "path": "/edges/-", "value": {"from": "b", "to": "x"}},
    {"op": "add", "path": "/edges/-", "value": {"from": "x", "to": "c"}},
]

# 1,000 runs: kind -> (how many, the status each ends in).
MIX: dict[str, tuple[int, str]] = {
    "chain": (500, "COMPLETED"),
    "branch": (250, "COMPLETED"),  # a condition; the other branch is skipped
    "failing": (80, "FAILED"),  # fails twice (a retry), then for good
    "approve": (50, "COMPLETED"),
    "reject": (40, "COMPLETED"),  # down the rejected branch
    "patch": (40, "COMPLETED"),  # a person's patch inserts a node, then the gate opens
    "cancel": (40, "CANCELLED"),
}
CONCURRENCY = 16


@dataclass
class Workload:
    key: str
    expected: dict[str, str]  # run id -> final status
    patched: str  # a run with a patch, approvals, nodes and events: the one watched


def waiting_at(node: str) -> Callable[[dict[str, Any]], None]:
    def check(run: dict[str, Any]) -> None:
        assert statuses(run).get(node) == "WAITING", run

    return check


async def _drive(client: RunClient, kind: str, i: int, names: dict[str, str]) -> str:
    """Submit one run of ``kind`` and do what a person does to it; its id."""
    workflow = {
        "chain": "chain",
        "branch": "branch",
        "failing": "failing",
        "approve": "review",
        "reject": "review",
        "cancel": "review",
        "patch": "gated",
    }[kind]
    run_input = {"n": i, "numbers": list(range(i % 7))}
    r = await client.rest.post(
        "/v1/runs", json={"workflow_id": names[workflow], "input": run_input}
    )
    assert r.status_code == 202, r.text
    run_id: str = r.json()["run_id"]
    position: str = r.json()["position"]
    if kind in ("approve", "reject", "cancel"):
        await client.until(run_id, waiting_at("review"), position, timeout=300)
        if kind == "cancel":
            r = await client.rest.post(f"/v1/runs/{run_id}/cancel", json={"reason": "not now"})
        else:
            r = await client.rest.post(
                f"/v1/runs/{run_id}/approvals/review", json={"decision": kind}
            )
        assert r.status_code == 202, r.text
    elif kind == "patch":
        await client.until(run_id, waiting_at("gate"), position, timeout=300)
        r = await client.rest.post(
            f"/v1/runs/{run_id}/patches", json={"patch": INSERT_X, "reason": "check b first"}
        )
        assert r.status_code == 202, r.text

        def applied(run: dict[str, Any]) -> None:
            assert [p["status"] for p in run["patches"]] == ["APPLIED"], run

        await client.until(run_id, applied, r.json()["position"], timeout=300)
        r = await client.rest.post(
            f"/v1/runs/{run_id}/approvals/gate", json={"decision": "approve"}
        )
        assert r.status_code == 202, r.text
    return run_id


async def all_runs(client: RunClient) -> dict[str, str]:
    """Every run of the client's tenant: id -> status."""
    out: dict[str, str] = {}
    after = None
    while True:
        page = (await client.query(RUNS, {"after": after}))["runs"]
        out.update({e["node"]["id"]: e["node"]["status"] for e in page["edges"]})
        if not page["pageInfo"]["hasNextPage"]:
            return out
        after = page["pageInfo"]["endCursor"]


@pytest.fixture(scope="module")
async def workload(services: Settings) -> AsyncIterator[Workload]:
    """1,000 runs of a fresh tenant, every kind the read models know, all finished."""
    tag = uuid.uuid4().hex[:10]
    key = await unthrottled_key(services, f"rb-{tag}")
    branching = json.loads((EXAMPLES / "branching.json").read_text())["definition"]
    definitions = {
        "chain": CHAIN,
        "branch": branching,
        "failing": FAILING,
        "review": REVIEW,
        "gated": GATED,
    }
    names = {k: f"{k}-{tag}" for k in definitions}
    async with http_clients(services, key) as (rest, gql):
        client = RunClient(rest, gql, RUN)
        for k, definition in definitions.items():
            r = await rest.post("/v1/workflows", json={"name": names[k], "definition": definition})
            assert r.status_code == 201, r.text
        gate = asyncio.Semaphore(CONCURRENCY)
        kinds = [kind for kind, (count, _) in MIX.items() for _ in range(count)]

        async def one(i: int, kind: str) -> tuple[str, str]:
            async with gate:
                return await _drive(client, kind, i, names), MIX[kind][1]

        expected = dict(await asyncio.gather(*(one(i, k) for i, k in enumerate(kinds))))
        assert len(expected) == 1000

        async def finished() -> None:
            seen = await all_runs(client)
            wrong = {r: (seen.get(r), s) for r, s in expected.items() if seen.get(r) != s}
            assert not wrong, (
                f"{len(wrong)} runs not finished as intended, e.g. {list(wrong.items())[:3]}"
            )

        await eventually(finished, timeout=600, interval=1.0)
        patched = next(r for r, s in zip(expected, kinds, strict=True) if s == "patch")
        yield Workload(key, expected, patched)


# --- the log and the read side, settled -------------------------------------------------


async def log_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in TOPICS for p in await topic_partitions(consumer, t)]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): o for tp, o in ends.items() if o > 0}
    finally:
        await consumer.stop()


async def stored_offsets(dsn: str) -> dict[tuple[str, int], int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT topic, partition, next_offset FROM projection_offsets WHERE projection = $1",
            DEFAULT_PROJECTION,
        )
    finally:
        await conn.close()
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows if r["topic"] in TOPICS}


async def settled(services: Settings) -> tuple[dict[tuple[str, int], int], Dump]:
    """(log end offsets, dump of the live read models) once the live projector has projected
    the whole log and the log did not move while the dump was taken."""

    async def attempt() -> tuple[dict[tuple[str, int], int], Dump]:
        ends = await log_ends(services.kafka_bootstrap)
        assert await stored_offsets(services.postgres_dsn) == ends, "not projected up to the end"
        dump = await dump_schema(services.postgres_dsn)
        assert await log_ends(services.kafka_bootstrap) == ends, "the log moved during the dump"
        return ends, dump

    return await eventually(attempt, timeout=300, interval=0.5)


async def replay(*args: str) -> asyncio.subprocess.Process:
    """``aob replay projections --json`` as a user runs it, with this stack's environment."""
    return await asyncio.create_subprocess_exec(
        str(AOB),
        "replay",
        "projections",
        "--json",
        *args,
        env=os.environ.copy(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finished_replay(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert result["swapped"] is True and result["projection"] == DEFAULT_PROJECTION
    return result


async def rebuild_schemas(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", REBUILD_PREFIX
        )
    finally:
        await conn.close()
    return [r["nspname"] for r in rows]


# --- the tests ---------------------------------------------------------------------------


async def test_after_1000_runs_the_rebuilt_read_models_are_identical(
    services: Settings, workload: Workload, figures: list[dict[str, Any]]
) -> None:
    ends, before = await settled(services)
    assert {json.loads(r)["run_id"] for r in before.tables["runs"].rows} >= workload.expected.keys()
    for table, dump in before.tables.items():
        if table != "projection_poison":
            assert dump.rows, f"the workload left {table} empty: it exercises every table"

    result = await finished_replay(await replay())

    ends_after, after = await settled(services)
    assert ends_after == ends, (
        f"the log moved during the comparison (ends {ends} -> {ends_after}): something else "
        "wrote to this stack meanwhile; run the test again on a quiet stack"
    )
    diff = differences(before, after)
    assert not diff, "the rebuilt read models differ:\n" + "\n".join(diff)
    assert before.digests() == after.digests()
    # Every distinct event of the log, applied once.
    assert result["events"] == len(after.tables["run_events"].rows) + len(
        after.tables["workflow_events"].rows
    )
    figures.append(
        {
            "rebuild": "aob replay projections",
            "events": result["events"],
            "records": result["records"],
            "seconds": result["seconds"],
            "events_per_second": result["events_per_second"],
            "rows": {t: len(d.rows) for t, d in after.tables.items()},
        }
    )


async def test_queries_keep_answering_and_the_live_projector_goes_on_across_a_rebuild(
    services: Settings,
    workload: Workload,
    other_tenant_key: str,
    figures: list[dict[str, Any]],
) -> None:
    headers = {"Authorization": f"Bearer {workload.key}"}
    async with (
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=60) as gql,
        http_clients(services, other_tenant_key) as (rest, other_gql),
    ):
        watcher = RunClient(rest, gql, RUN)
        baseline_runs = await watcher.query(RUNS, {"after": None})
        baseline_run = await watcher.run(workload.patched)
        assert len(baseline_runs["runs"]["edges"]) == 500
        # A connection with a cached prepared statement, as the query API's pool keeps them.
        pg = await asyncpg.connect(services.postgres_dsn)
        statement = "SELECT run_id, status FROM runs WHERE tenant = $1 ORDER BY run_id"
        tenant = await pg.fetchval("SELECT tenant FROM runs WHERE run_id = $1", workload.patched)
        rows_before = [tuple(r) for r in await pg.fetch(statement, tenant)]

        answers, failures = 0, []

        async def keep_asking(proc: asyncio.subprocess.Process) -> None:
            nonlocal answers
            while proc.returncode is None:
                try:
                    runs = await watcher.query(RUNS, {"after": None})
                    run = await watcher.run(workload.patched)
                    if runs != baseline_runs or run != baseline_run:
                        failures.append("an answer differed from the one before the rebuild")
                except Exception as e:
                    failures.append(repr(e))
                answers += 1

        newcomer = RunClient(rest, other_gql, RUN)
        proc = await replay()
        asking = asyncio.create_task(keep_asking(proc))
        during, _ = await newcomer.submit("during-rebuild", CHAIN, {"n": 1})
        result = await finished_replay(proc)
        await asking
        after_swap, _ = await newcomer.submit("after-rebuild", CHAIN, {"n": 2})

        # The same pool (and the same prepared statement) after the swap.
        assert await watcher.query(RUNS, {"after": None}) == baseline_runs
        assert await watcher.run(workload.patched) == baseline_run
        assert [tuple(r) for r in await pg.fetch(statement, tenant)] == rows_before
        await pg.close()
        assert not failures, f"{len(failures)} of {answers} answers failed: {failures[:3]}"
        assert answers > 0

        def complete(run: dict[str, Any]) -> None:
            assert run["status"] == "COMPLETED", run
            assert set(statuses(run).values()) == {"SUCCEEDED"}, run
            types = [e["node"]["type"] for e in run["events"]["edges"]]
            assert types[0] == "run.submitted" and types[-1] == "run.completed", types

        await newcomer.until(during, complete, timeout=120)
        await newcomer.until(after_swap, complete, timeout=120)
    figures.append({"queries answered during a rebuild": answers, "rebuild_s": result["seconds"]})

    # What the live projector made after the swap (re-reading records the rebuild had
    # applied already) is what a fold from the start makes.
    ends, before = await settled(services)
    await finished_replay(await replay())
    ends_after, after = await settled(services)
    assert ends_after == ends, "the log moved during the comparison; run again on a quiet stack"
    diff = differences(before, after)
    assert not diff, "after the swap the live projector diverged:\n" + "\n".join(diff)


async def _blocked_at_the_swap(services: Settings) -> None:
    """Until the rebuild waits for the live batch lock (it has built its schema by then)."""
    conn = await asyncpg.connect(services.postgres_dsn)
    try:

        async def waiting() -> None:
            assert await rebuild_schemas(services.postgres_dsn), "no rebuild schema yet"
            n = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE application_name = 'aob-replay' AND wait_event_type = 'Lock'"""
            )
            assert n == 1, "the rebuild is not waiting for the swap's lock"

        await eventually(waiting, timeout=300, interval=0.1)
    finally:
        await conn.close()


async def test_an_interrupted_rebuild_leaves_the_live_tables_and_drops_its_schema(
    services: Settings, workload: Workload
) -> None:
    _, before = await settled(services)
    holder = await asyncpg.connect(services.postgres_dsn)
    try:
        # Holding the live schema's batch lock stops the rebuild right before its swap.
        tx = holder.transaction()
        await tx.start()
        await db.lock_batches(holder, "public")
        proc = await replay()
        await _blocked_at_the_swap(services)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = await proc.communicate()
        await tx.rollback()
        assert proc.returncode == 1, (out, err)
        assert err.decode().strip().splitlines()[-1] == (
            "error: interrupted: the live read models are unchanged; the partial rebuild was "
            "dropped"
        )
        assert await rebuild_schemas(services.postgres_dsn) == []

        # Killed outright: nothing can clean up, so the next rebuild does, and says so.
        tx = holder.transaction()
        await tx.start()
        await db.lock_batches(holder, "public")
        proc = await replay()
        await _blocked_at_the_swap(services)
        left = await rebuild_schemas(services.postgres_dsn)
        proc.kill()
        await proc.wait()
        await tx.rollback()
        assert await rebuild_schemas(services.postgres_dsn) == left
    finally:
        await holder.close()
    _, untouched = await settled(services)
    assert differences(before, untouched) == []

    proc = await replay()
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert f"dropped what an earlier rebuild left: {left[0]}" in err.decode()
    assert await rebuild_schemas(services.postgres_dsn) == []


async def test_batch_locks_are_per_schema(services: Settings) -> None:
    a = await asyncpg.connect(services.postgres_dsn)
    b = await asyncpg.connect(services.postgres_dsn)
    try:
        async with a.transaction():
            await db.lock_batches(a, "public")
            async with b.transaction():
                await b.execute("SET LOCAL lock_timeout = '2s'")
                await db.lock_batches(b, f"{REBUILD_PREFIX}elsewhere")  # not held up
            async with b.transaction():
                await b.execute("SET LOCAL lock_timeout = '200ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await db.lock_batches(b, "public")
    finally:
        await a.close()
        await b.close()
