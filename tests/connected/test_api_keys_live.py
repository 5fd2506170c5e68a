"""API keys on the running system: scopes refused with 403 naming the missing one, keys
managed over REST by an admin key of the same tenant, and a revoked key refused by every
process that authenticates (the command API, the query API, an open subscription) within a
second of the revocation, through PostgreSQL's NOTIFY rather than a cache running out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from auth import issue_key
from infra.settings import Settings
from tests.connected.graphql_ws import Socket, socket
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RUNS = "query { runs(first: 1) { edges { node { id } } } }"
WAIT = {
    "nodes": [{"id": "ask", "type": "hitl", "config": {"prompt": "ok?"}}],
    "edges": [],
}
# A revocation is pushed to every process (NOTIFY), so it takes effect at once; the bound
# here only keeps a slow CI machine from failing the test. The time it took is printed.
REVOCATION_BOUND_S = 5.0


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_without_a_scope_is_refused_naming_it(services: Settings, unique: str) -> None:
    tenant = f"sc-{unique[:10]}"
    submitter = await issue_key(services.postgres_dsn, tenant, scopes=["publish", "submit"])
    approver = await issue_key(services.postgres_dsn, tenant, scopes=["approve", "read"])
    async with httpx.AsyncClient(base_url=services.command_api_url, timeout=30) as rest:
        r = await rest.post(
            "/v1/workflows",
            json={"name": f"wait-{unique[:8]}", "definition": WAIT},
            headers=_auth(submitter),
        )
        assert r.status_code == 201, r.text
        r = await rest.post(
            "/v1/runs", json={"workflow_id": f"wait-{unique[:8]}"}, headers=_auth(submitter)
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        # Whoever submits a run cannot approve it with the same key.
        r = await rest.post(
            f"/v1/runs/{run_id}/approvals/ask",
            json={"decision": "approve"},
            headers=_auth(submitter),
        )
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "'approve'" in r.json()["detail"], r.json()
        # Nor read through GraphQL without `read`.
        async with httpx.AsyncClient(base_url=services.query_api_url, timeout=30) as gql:
            r = await gql.post("/graphql", json={"query": RUNS}, headers=_auth(submitter))
            assert r.status_code == 403 or "'read'" in r.text, r.text
            assert "'read'" in r.text
        # Nor manage keys without `admin`.
        r = await rest.get("/v1/keys", headers=_auth(approver))
        assert r.status_code == 403 and "'admin'" in r.json()["detail"], r.text
        # The approver can.
        r = await rest.post(
            f"/v1/runs/{run_id}/approvals/ask",
            json={"decision": "approve"},
            headers=_auth(approver),
        )
        assert r.status_code == 202, r.text


async def test_an_admin_manages_its_tenants_keys_and_a_revoked_key_stops_everywhere(
    services: Settings, unique: str
) -> None:
    tenant = f"rv-{unique[:10]}"
    admin = await issue_key(services.postgres_dsn, tenant, scopes=["admin"])
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, timeout=30) as gql,
    ):
        r = await rest.post(
            "/v1/keys",
            json={"scopes": ["read", "publish", "submit"], "name": "ci"},
            headers=_auth(admin),
        )
        assert r.status_code == 201, r.text
        made: dict[str, Any] = r.json()
        key, key_id = made["key"], made["key_id"]
        r = await rest.post(
            "/v1/keys", json={"scopes": ["read", "launch-missiles"]}, headers=_auth(admin)
        )
        assert r.status_code == 422, r.text
        listed = (await rest.get("/v1/keys", headers=_auth(admin))).json()["keys"]
        mine = [k for k in listed if k["key_id"] == key_id]
        assert mine and sorted(mine[0]["scopes"]) == ["publish", "read", "submit"]
        assert key not in str(listed)  # never shown again

        # The new key works on both APIs (and so sits in each process's cache) ...
        r = await gql.post("/graphql", json={"query": RUNS}, headers=_auth(key))
        assert r.status_code == 200 and not r.json().get("errors"), r.text
        definition = {"nodes": [{"id": "a", "type": "noop"}], "edges": []}
        r = await rest.post(
            "/v1/workflows",
            json={"name": f"k-{unique[:8]}", "definition": WAIT},
            headers=_auth(key),
        )
        assert r.status_code == 201, r.text
        r = await rest.post("/v1/runs", json={"workflow_id": f"k-{unique[:8]}"}, headers=_auth(key))
        assert r.status_code == 202, r.text
        waiting = r.json()["run_id"]

        async with socket(services.query_api_url, init_key=key) as ws:
            # ... and holds a subscription open on a run that waits for a person.
            op = await ws.subscribe(
                "subscription($id: ID!) { runUpdated(id: $id) { status } }", {"id": waiting}
            )
            first = await ws.receive()
            assert first["type"] == "next", first
            r = await rest.delete(f"/v1/keys/{key_id}", headers=_auth(admin))
            assert r.status_code in (200, 204), r.text
            revoked_at = time.monotonic()

            async def refused_everywhere() -> None:
                a = await gql.post("/graphql", json={"query": RUNS}, headers=_auth(key))
                b = await rest.post(
                    "/v1/workflows",
                    json={"name": f"k2-{unique[:8]}", "definition": definition},
                    headers=_auth(key),
                )
                assert a.status_code == 401 and b.status_code == 401, (a.text, b.text)

            await eventually(refused_everywhere, timeout=REVOCATION_BOUND_S, interval=0.05)
            took = time.monotonic() - revoked_at
            print(f"revoked key refused by both APIs {took * 1000:.0f} ms after the revocation")
            # The open subscription ends too.
            ended = await asyncio.wait_for(_ended(ws, op), REVOCATION_BOUND_S)
            assert ended

        listed = (await rest.get("/v1/keys", headers=_auth(admin))).json()["keys"]
        assert next(k for k in listed if k["key_id"] == key_id)["revoked_at"]


async def _ended(ws: Socket, op: str) -> bool:
    """True once the server ended the subscription or closed the connection."""
    try:
        while True:
            message = await ws.receive()
            if message.get("id") == op and message["type"] in ("complete", "error"):
                return True
    except ConnectionClosed:
        return True
