"""Webhooks on the running system: a delivery with a bad signature, an old timestamp or a
signature used already gets a 401 with its reason and starts nothing; a good one starts a
run of the hook's workflow with the body as its input. The hook's secret is shown once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients
from triggers.signatures import sign

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) { status input workflowName nodes { id status output } }
}
"""

ECHO = {"nodes": [{"id": "echo", "type": "transform", "config": {"output": "{{ input }}"}}]}


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


async def deliver(
    services: Settings, hook_id: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """A POST to the hook's URL as an outside system sends it: no API key."""
    async with httpx.AsyncClient(base_url=services.command_api_url, timeout=30) as anonymous:
        return await anonymous.post(
            f"/v1/hooks/{hook_id}",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-AOB-Timestamp": str(ts), "X-AOB-Signature": sign(secret, ts, body)}


async def test_a_signed_delivery_starts_a_run_and_bad_or_replayed_ones_get_401(
    services: Settings, client: RunClient, unique: str
) -> None:
    name = f"hooked-{unique[:8]}"
    r = await client.rest.post("/v1/workflows", json={"name": name, "definition": ECHO})
    assert r.status_code == 201, r.text
    r = await client.rest.post("/v1/hooks", json={"workflow": name})
    assert r.status_code == 201, r.text
    hook_id, secret = r.json()["hook_id"], r.json()["secret"]
    listed = (await client.rest.get("/v1/hooks")).json()["hooks"]
    assert [h["hook_id"] for h in listed] == [hook_id]
    assert "secret" not in json.dumps(listed)  # shown once, at creation

    body = json.dumps({"order": 42}).encode()
    refusals: list[tuple[dict[str, str], str]] = [
        ({}, "no X-AOB-Timestamp"),
        (signed("not-the-secret", body), "does not match"),
        (signed(secret, b'{"order": 43}'), "does not match"),  # signed another body
        (signed(secret, body, int(time.time()) - 3600), "s old"),
        ({"X-AOB-Timestamp": str(int(time.time())), "X-AOB-Signature": "sha256=zz"}, "hex"),
    ]
    for headers, reason in refusals:
        r = await deliver(services, hook_id, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert reason in r.json()["detail"], r.text

    good = signed(secret, body)
    r = await deliver(services, hook_id, body, good)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]

    # The same delivery again, within the window: a replay.
    again = await deliver(services, hook_id, body, good)
    assert again.status_code == 401, again.text
    assert "used already" in again.json()["detail"]

    def done(run: dict[str, Any]) -> None:
        assert run["status"] == "COMPLETED", run

    run = await client.until(run_id, done)
    assert run["input"] == {"order": 42}
    assert run["workflowName"] == name
    assert run["nodes"][0]["output"] == {"order": 42}

    # Only the good delivery started a run: the tenant's registry holds one.
    runs = await client.query("query { runs(first: 50) { edges { node { id } } } }")
    assert [e["node"]["id"] for e in runs["runs"]["edges"]] == [run_id]

    # A deleted hook takes no delivery, however well signed.
    assert (await client.rest.delete(f"/v1/hooks/{hook_id}")).status_code == 204
    late = await deliver(services, hook_id, b"{}", signed(secret, b"{}"))
    assert late.status_code == 404, late.text
