"""Live subscriptions over a real WebSocket (graphql-transport-ws): ``runUpdated`` on a real
run of the running system, and ``runEvents``, keys, tenants and limits against a query API
whose read models the tests write (and NOTIFY) themselves, as the projector would."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest
from websockets.exceptions import ConnectionClosed

from infra.settings import Settings
from read_model.channels import RUN_CHANNEL
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS
from tests.connected.conftest import LIVE_HTTP_TARGET
from tests.connected.graphql_ws import RECEIVE_GUARD_S, refusal_of, socket
from tests.connected.query_api.support import T0, QueryApi, insert_run
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RUN_UPDATED = """subscription($id: ID!) {
  runUpdated(id: $id) { id status updatedAt nodes { id status } } }"""
RUN_EVENTS_SUB = """subscription($id: ID!, $after: String) {
  runEvents(id: $id, after: $after) { cursor node { id seq type payload } } }"""


def data_of(messages: list[dict[str, Any]], field: str) -> list[Any]:
    """The ``field`` of every ``next`` message, checking that none carries errors."""
    assert messages[-1]["type"] == "complete", messages[-1]
    nexts = [m["payload"] for m in messages if m["type"] == "next"]
    assert all(not p.get("errors") for p in nexts), nexts
    return [p["data"][field] for p in nexts]


# --- runUpdated on a real run --------------------------------------------------------------


@contextmanager
def held_target() -> Iterator[tuple[threading.Event, threading.Event]]:
    """A loopback target the workers may call, which holds its answer until released:
    (arrived, release)."""
    arrived, release = threading.Event(), threading.Event()

    class Hold(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            arrived.set()
            release.wait(RECEIVE_GUARD_S)
            body = b'{"held": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(LIVE_HTTP_TARGET, Hold)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield arrived, release
    finally:
        release.set()
        server.shutdown()
        server.server_close()


HELD = {
    "nodes": [
        {
            "id": "call",
            "type": "http",
            "config": {"method": "GET", "url": "http://{}:{}/hold".format(*LIVE_HTTP_TARGET)},
            "timeout_s": 120,
        }
    ],
    "edges": [],
}


async def test_run_updated_sends_running_then_completed_and_refuses_another_tenant(
    services: Settings, api_key: str, other_tenant_key: str, unique: str
) -> None:
    with held_target() as (arrived, release):
        async with http_clients(services, api_key) as (rest, gql):
            client = RunClient(
                rest,
                gql,
                "query($id: ID!, $after: String) { run(id: $id, after: $after) { status } }",
            )
            run_id, _ = await client.submit(f"held-{unique}", HELD)
            await eventually(lambda: assert_true(arrived.is_set()), timeout=60)
            # The node is in flight and held there: the run is RUNNING until released.
            await client.until(run_id, lambda r: assert_eq(r["status"], "RUNNING"))

        async with socket(services.query_api_url, init_key=api_key) as mine:
            op = await mine.subscribe(RUN_UPDATED, {"id": run_id})
            first = await mine.receive()
            assert first["type"] == "next", first
            assert first["payload"]["data"]["runUpdated"]["status"] == "RUNNING"

            # Another tenant's key, on its own connection, gets an error and no data.
            async with socket(services.query_api_url, header_key=other_tenant_key) as theirs:
                refused = await theirs.until_complete(
                    await theirs.subscribe(RUN_UPDATED, {"id": run_id})
                )
            assert refused[0]["payload"]["data"] is None
            assert refused[0]["payload"]["errors"][0]["message"] == (
                f"no run {run_id} for this key"
            )
            assert refused[-1]["type"] == "complete"

            release.set()
            runs = [first["payload"]["data"]["runUpdated"]]
            runs += data_of(await mine.until_complete(op), "runUpdated")

    statuses = [r["status"] for r in runs]
    distinct = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert distinct == ["RUNNING", "COMPLETED"], statuses
    assert statuses[-1] == "COMPLETED"  # and nothing after it: the subscription completed
    assert runs[-1]["nodes"] == [{"id": "call", "status": "SUCCEEDED"}]
    updated = [r["updatedAt"] for r in runs]
    assert updated == sorted(updated) and len(set(updated)) == len(updated)  # no repeats


def assert_true(value: bool) -> None:
    assert value


def assert_eq(a: Any, b: Any) -> None:
    assert a == b, (a, b)


# --- keys and limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        {},
        {"init_key": "aob_000000000000_" + "x" * 43},
        {"header_key": "not-a-key"},
        {"init_key": "nonsense"},
    ],
    ids=["no key", "unknown key", "bad header", "malformed init"],
)
async def test_a_connection_without_a_valid_key_is_closed_with_4401(
    query_api: QueryApi, keys: dict[str, str]
) -> None:
    code, reason = await refusal_of(query_api.url, **keys)
    assert code == 4401
    assert "missing or unknown API key" in reason


async def test_the_key_in_connection_init_wins_over_the_header(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str, other_key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="COMPLETED")
    async with socket(query_api.url, header_key=other_key, init_key=key) as s:
        got = data_of(
            await s.until_complete(await s.subscribe(RUN_UPDATED, {"id": run_id})), "runUpdated"
        )
    assert [r["status"] for r in got] == ["COMPLETED"]
    # A valid header key that the init payload contradicts with a bad one is refused.
    code, _ = await refusal_of(query_api.url, header_key=key, init_key="nonsense")
    assert code == 4401


async def test_subscriptions_per_connection_are_capped(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="RUNNING")
    async with socket(query_api.url, init_key=key) as s:
        for _ in range(20):  # AOB_QUERY_API_MAX_SUBSCRIPTIONS_PER_CONNECTION's default
            op = await s.subscribe(RUN_UPDATED, {"id": run_id})
            first = await s.receive()
            assert (first["id"], first["type"]) == (op, "next")
        over = await s.subscribe(RUN_UPDATED, {"id": run_id})
        refused = await s.receive()
    assert (refused["id"], refused["type"]) == (over, "error")
    assert refused["payload"][0]["message"] == "Subscription limit reached"


async def test_query_limits_apply_to_subscriptions(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="RUNNING")
    aliases = " ".join(f"a{i}: id" for i in range(40))
    async with socket(query_api.url, init_key=key) as s:
        op = await s.subscribe(
            f"subscription($id: ID!) {{ runUpdated(id: $id) {{ {aliases} }} }}", {"id": run_id}
        )
        refused = await s.receive()
    assert (refused["id"], refused["type"]) == (op, "error"), refused
    assert refused["payload"][0]["message"] == "40 aliases found. Allowed: 30"

    # Too many tokens fail the parse: graphql-transport-ws closes the socket for that.
    tokens = " ".join(["id"] * 2_100)
    async with socket(query_api.url, init_key=key) as s:
        await s.subscribe(
            f"subscription($id: ID!) {{ runUpdated(id: $id) {{ {tokens} }} }}", {"id": run_id}
        )
        with pytest.raises(ConnectionClosed) as closed:
            await s.receive()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert "2000 tokens" in closed.value.rcvd.reason


async def test_subscriptions_are_not_served_over_http(query_api: QueryApi, key: str) -> None:
    response = await query_api.query(key, 'subscription { runUpdated(id: "r") { id } }')
    assert response.status_code in (200, 400, 405), response.text
    assert "runUpdated" not in (response.json().get("data") or {})


# --- runEvents -------------------------------------------------------------------------------


async def add_events(
    pg: asyncpg.Connection, run_id: str, first_seq: int, types: list[str], partition: int = 0
) -> None:
    """Events as the projector writes them (offset = 10 * seq), then its NOTIFY."""
    await pg.executemany(
        """INSERT INTO run_events (run_id, seq, event_id, type, occurred_at, kafka_partition,
                 kafka_offset, causation_id, actor, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, '{"kind": "system"}'::jsonb, $8::jsonb)""",
        [
            (
                run_id,
                seq,
                f"ev-{uuid.uuid4().hex}",
                type_,
                T0 + timedelta(seconds=seq),
                partition,
                10 * seq,
                json.dumps({"n": seq}),
            )
            for seq, type_ in enumerate(types, start=first_seq)
        ],
    )
    await pg.execute(
        "UPDATE runs SET event_count = event_count + $2, updated_at = now() WHERE run_id = $1",
        run_id,
        len(types),
    )
    await pg.execute("SELECT pg_notify($1, $2)", RUN_CHANNEL, run_id)


async def complete(pg: asyncpg.Connection, run_id: str, seq: int) -> None:
    async with pg.transaction():  # as the projector: the status and its event together
        await pg.execute("UPDATE runs SET status = 'COMPLETED' WHERE run_id = $1", run_id)
        await add_events(pg, run_id, seq, ["run.completed"])


async def test_run_events_streams_then_resumes_without_gaps_or_repeats(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="RUNNING")
    await add_events(pg, run_id, 1, ["run.submitted", "run.started", "run.node_scheduled"])
    async with socket(query_api.url, init_key=key) as s:
        op = await s.subscribe(RUN_EVENTS_SUB, {"id": run_id})
        live = [(await s.receive())["payload"]["data"]["runEvents"] for _ in range(3)]
        await add_events(pg, run_id, 4, ["run.node_started", "run.node_succeeded"])
        live += [(await s.receive())["payload"]["data"]["runEvents"] for _ in range(2)]
        await complete(pg, run_id, 6)
        live += data_of(await s.until_complete(op), "runEvents")

        assert [e["node"]["seq"] for e in live] == [1, 2, 3, 4, 5, 6]
        assert live[-1]["node"]["type"] == "run.completed"
        # The cursors are the ones Run.events issues: either resumes the other.
        page = await query_api.data(
            key,
            "query($id: ID!) { run(id: $id) { events(first: 10) { edges { cursor } } } }",
            {"id": run_id},
        )
        assert [e["cursor"] for e in page["run"]["events"]["edges"]] == [e["cursor"] for e in live]

        async def resumed(after: str) -> list[int]:
            op = await s.subscribe(RUN_EVENTS_SUB, {"id": run_id, "after": after})
            return [e["node"]["seq"] for e in data_of(await s.until_complete(op), "runEvents")]

        assert await resumed(live[2]["cursor"]) == [4, 5, 6]
        assert await resumed(live[5]["cursor"]) == []  # past the end of a finished run
        assert await resumed(f"{RUN_EVENTS}:0:40") == [5, 6]  # offset 40 is seq 4's
        assert await resumed(f"{RUN_EVENTS}:0:45") == [5, 6]  # between two events
        assert await resumed(f"{RUN_EVENTS}:0:0") == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("after", "says"),
    [
        ("not a cursor!", "is not one this API issued"),
        (f"{WORKFLOW_EVENTS}:0:1", f"is not on {RUN_EVENTS}"),
        (f"{RUN_EVENTS}:3:1", "is on partition 3, but run"),
        (f"{RUN_EVENTS}:zero:1", "non-numeric partition"),
    ],
)
async def test_run_events_says_what_is_wrong_with_after(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str, after: str, says: str
) -> None:
    run_id = await insert_run(pg, tenant, status="RUNNING")
    await add_events(pg, run_id, 1, ["run.submitted"])
    async with socket(query_api.url, init_key=key) as s:
        got = await s.until_complete(
            await s.subscribe(RUN_EVENTS_SUB, {"id": run_id, "after": after})
        )
    assert got[0]["payload"]["data"] is None
    assert says in got[0]["payload"]["errors"][0]["message"], got


async def test_run_events_of_another_tenants_run_are_refused(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, other_key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="COMPLETED")
    await add_events(pg, run_id, 1, ["run.submitted", "run.completed"])
    async with socket(query_api.url, init_key=other_key) as s:
        got = await s.until_complete(await s.subscribe(RUN_EVENTS_SUB, {"id": run_id}))
    assert got[0]["payload"]["data"] is None
    assert [e["message"] for e in got[0]["payload"]["errors"]] == [f"no run {run_id} for this key"]


async def test_run_updated_wakes_on_notify_and_skips_what_did_not_change(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    run_id = await insert_run(pg, tenant, status="PENDING")
    async with socket(query_api.url, init_key=key) as s:
        op = await s.subscribe(RUN_UPDATED, {"id": run_id})
        first = (await s.receive())["payload"]["data"]["runUpdated"]
        for _ in range(3):  # woken for nothing a client sees: no message
            await pg.execute("SELECT pg_notify($1, $2)", RUN_CHANNEL, run_id)
        # As the projector writes: the status and its event together. Apart, a wake-up left
        # over from the NOTIFYs above could read the status before the event (two messages).
        async with pg.transaction():
            await pg.execute("UPDATE runs SET status = 'RUNNING' WHERE run_id = $1", run_id)
            await add_events(pg, run_id, 1, ["run.started"])
        second = (await s.receive())["payload"]["data"]["runUpdated"]
        await complete(pg, run_id, 2)
        rest = data_of(await s.until_complete(op), "runUpdated")
    assert [r["status"] for r in [first, second, *rest]] == ["PENDING", "RUNNING", "COMPLETED"]


async def test_a_lost_listen_connection_does_not_hang_a_subscription(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    listeners = "SELECT pid FROM pg_stat_activity WHERE application_name = 'aob-query-api-listen'"
    run_id = await insert_run(pg, tenant, status="RUNNING")
    async with socket(query_api.url, init_key=key) as s:
        op = await s.subscribe(RUN_UPDATED, {"id": run_id})
        assert (await s.receive())["payload"]["data"]["runUpdated"]["status"] == "RUNNING"
        await pg.execute(f"SELECT pg_terminate_backend(pid) FROM ({listeners}) AS l")
        # A change whose NOTIFY nobody heard: the subscriber re-reads when the connection
        # is lost, polls while it is down, and re-reads again once it is back.
        await pg.execute(
            "UPDATE runs SET status = 'COMPLETED', event_count = event_count + 1 WHERE run_id = $1",
            run_id,
        )
        got = data_of(await s.until_complete(op), "runUpdated")
    assert [r["status"] for r in got] == ["COMPLETED"]

    async def listening_again() -> None:
        assert await pg.fetch(listeners)

    await eventually(listening_again, timeout=30)


async def test_a_run_not_yet_projected_is_an_error_not_a_wait(
    query_api: QueryApi, key: str
) -> None:
    async with socket(query_api.url, init_key=key) as s:
        got = await s.until_complete(await s.subscribe(RUN_UPDATED, {"id": "run-nope"}))
    assert got[0]["payload"]["errors"][0]["message"] == "no run run-nope for this key"


# --- runs pagination while runs are inserted ---------------------------------------------


async def test_runs_pages_neither_skip_nor_repeat_while_runs_are_inserted(
    query_api: QueryApi, pg: asyncpg.Connection, tenant: str, key: str
) -> None:
    query = """query($filter: RunFilter, $after: String) {
        runs(filter: $filter, first: 2, after: $after) {
          edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
    there = [
        await insert_run(pg, tenant, workflow_id="wf-p", created_at=T0 + timedelta(seconds=i))
        for i in range(5)
    ]
    await insert_run(pg, tenant, workflow_id="wf-q", created_at=T0)  # filtered out

    async def page(after: str | None) -> dict[str, Any]:
        variables = {"filter": {"workflowId": "wf-p", "status": "RUNNING"}, "after": after}
        runs: dict[str, Any] = (await query_api.data(key, query, variables))["runs"]
        return runs

    first = await page(None)
    seen = [e["node"]["id"] for e in first["edges"]]
    # Between two pages, a newer run (before the pages read) and an older one arrive.
    await insert_run(pg, tenant, workflow_id="wf-p", created_at=T0 + timedelta(hours=1))
    older = await insert_run(pg, tenant, workflow_id="wf-p", created_at=T0 - timedelta(hours=1))
    after = first["pageInfo"]["endCursor"]
    for _ in range(10):
        next_page = await page(after)
        seen += [e["node"]["id"] for e in next_page["edges"]]
        if not next_page["pageInfo"]["hasNextPage"]:
            break
        after = next_page["pageInfo"]["endCursor"]
    assert seen == [*reversed(there), older]
