"""The cost of a query, and a tenant's query rate, on the running query API: the alias bomb,
a deep chain of forks and every node output of a full page of runs are refused with their
cost and the limit; the queries AOB's own clients send pass, also over real rows (the events
and approvals of a page of runs, read in one query each); a tenant past its rate gets 429
with Retry-After while another tenant is served."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cli.api_client import RUN_QUERY
from infra.settings import Settings
from query_api.settings import QueryApiSettings
from tests.connected.query_api.support import QueryApi, query_api_process
from tests.connected.run_client import RunClient, http_clients

pytestmark = pytest.mark.connected

EVENTS = "events(first: 500) { edges { node { seq type payload } } }"
ALIAS_BOMB = (
    "{ "
    + " ".join(
        f"a{i}: runs(first: 500) {{ edges {{ node {{ versions {{ definition }} {EVENTS} }} }} }}"
        for i in range(30)
    )
    + " }"
)
DEEP_FORKS = '{ run(id: "r") { forks { forks { forks { forks { forks { id } } } } } } }'
OUTPUTS = "{ runs(first: 500) { edges { node { nodes { output } } } } }"
PAGE = """{ runs(first: 10) { edges { node { id
  events(first: 50) { edges { node { seq type } } }
  approvals { nodeId status } } } } }"""
WAITING = {
    "nodes": [
        {"id": "prep", "type": "transform", "config": {"output": {"n": 1}}},
        {"id": "ask", "type": "hitl", "config": {"prompt": "ok?"}},
    ],
    "edges": [{"from": "prep", "to": "ask"}],
}


async def _post(gql: httpx.AsyncClient, query: str, **variables: Any) -> httpx.Response:
    return await gql.post("/graphql", json={"query": query, "variables": variables})


async def test_costly_queries_are_refused_with_their_cost_and_aobs_own_pass(
    services: Settings, api_key: str, unique: str
) -> None:
    limit = QueryApiSettings().max_query_cost
    async with http_clients(services, api_key) as (rest, gql):
        for query in (ALIAS_BOMB, DEEP_FORKS, OUTPUTS):
            r = await _post(gql, query)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body.get("data") is None, body
            (error,) = body["errors"]
            assert error["extensions"]["limit"] == limit
            assert error["extensions"]["cost"] > limit
            assert f"exceeds the limit of {limit:,}" in error["message"], error

        client = RunClient(rest, gql, RUN_QUERY)
        runs = []
        for i in range(3):
            run_id, _ = await client.submit(f"cost-{unique[:8]}-{i}", WAITING)
            runs.append(run_id)
        for run_id in runs:  # the CLI's own query, as `aob runs show` sends it
            await client.until(run_id, _asks)
        r = await _post(gql, PAGE)
        assert not r.json().get("errors"), r.text
        page = {e["node"]["id"]: e["node"] for e in r.json()["data"]["runs"]["edges"]}
        assert set(page) == set(runs)
        for node in page.values():  # events and approvals, batched across the page
            assert [e["node"]["seq"] for e in node["events"]["edges"]][:2] == [1, 2]
            assert node["approvals"] == [{"nodeId": "ask", "status": "WAITING"}]


def _asks(run: dict[str, Any]) -> None:
    assert [a["status"] for a in run["approvals"]] == ["WAITING"], run["approvals"]


# A query API of its own with a rate no machine's speed can keep up with: against the shared
# one (200/s, bursts of 400) a loaded machine answers too slowly to ever run out of tokens.
SLOW_RATE = {"AOB_QUERY_API_RATE_PER_SECOND": "0.5", "AOB_QUERY_API_RATE_BURST": "5"}


@pytest.fixture
async def slow_rate_api(stack: Settings) -> AsyncIterator[QueryApi]:
    async with query_api_process(stack, f"qrate_{uuid.uuid4().hex[:12]}", SLOW_RATE) as api:
        yield api


async def test_a_tenant_past_its_query_rate_gets_429_and_another_is_served(
    slow_rate_api: QueryApi, key: str, other_key: str
) -> None:
    query = "{ runs(first: 1) { edges { node { id } } } }"
    answers = await asyncio.gather(*(slow_rate_api.query(key, query) for _ in range(20)))
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 429}, codes
    # The burst of 5 and what refilled meanwhile (0.5/s): far fewer than the 20 sent.
    assert 5 <= codes.count(200) < 20, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert "query rate" in refused.json()["detail"]
    r = await slow_rate_api.query(other_key, query)
    assert r.status_code == 200, r.text
