"""Agent budgets on the running system, with a scripted model that uses 300 tokens a turn.

- A run with a budget of 1,000 tokens: the agent node stops before its fourth call, failing
  with the reason, and the model saw exactly three calls.
- With ``on_exceed: wait`` the node waits instead, with a BUDGET approval that says why; an
  approval that does not raise the budget enough is refused with the amount needed; one that
  raises it to 2,000 lets the node finish in a new attempt, and the spend counts every call.
- A tenant's limits on models: a model it does not allow is refused at publish (422 naming
  it), and ``max_tokens`` is capped by the tenant's cap on every call sent.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from infra.scripted_llm.client import ScriptedLLMClient
from infra.settings import Settings
from limits.budgets import AgentLimits
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from tests.connected.run_client import RunClient, http_clients
from tests.connected.workers.test_agent_patches_live import finish, nodes_of
from tests.helpers import eventually

pytestmark = pytest.mark.connected

USAGE = {"prompt_tokens": 250, "completion_tokens": 50, "total_tokens": 300}

QUERY = """
query($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    status error
    spend { tokens usd }
    budget { tokens usd onExceed }
    nodes { id status attempts error }
    approvals { nodeId kind status reason attempt refusals { reason } }
  }
}
"""


def searching() -> dict[str, Any]:
    """A turn that calls a tool the node does not have: the model is told so and goes on."""
    return {"tool_calls": [{"name": "search", "arguments": {"q": "x"}}], "usage": USAGE}


def finishing() -> dict[str, Any]:
    return {**finish("done"), "usage": USAGE}


def writer(token: str, budget: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "nodes": [{"id": "write", "type": "agent", "config": {"prompt": f"{token} go", **config}}],
        "edges": [],
    }
    if budget is not None:
        definition["budget"] = budget
    return definition


@pytest.fixture
async def api(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, QUERY)


async def ended(api: RunClient, run_id: str) -> dict[str, Any]:
    def done(run: dict[str, Any]) -> None:
        assert run["status"] in {"COMPLETED", "FAILED"}, run

    return await api.until(run_id, done, timeout=120)


async def test_a_node_stops_before_the_turn_that_would_pass_its_budget(
    api: RunClient, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    await scripted.add_script(
        token, [searching(), searching(), searching(), searching(), finishing()]
    )
    run_id, _ = await api.submit(f"budget-{token[:10]}", writer(token, {"tokens": 1000}))
    run = await ended(api, run_id)

    assert run["status"] == "FAILED", run
    node = nodes_of(run)["write"]
    assert node["status"] == "FAILED" and node["attempts"] == 1, node
    assert node["error"].startswith("budget exceeded: 900 of 1000 tokens"), node["error"]
    assert run["spend"]["tokens"] == 900
    assert run["budget"] == {"tokens": 1000, "usd": None, "onExceed": "fail"}
    assert len(await scripted.requests(token)) == 3  # the fourth call was never made


async def test_a_waiting_node_goes_on_once_a_person_raises_the_budget(
    api: RunClient, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    await scripted.add_script(token, [searching(), searching(), searching(), finishing()])
    budget = {"tokens": 1000, "on_exceed": "wait"}
    run_id, _ = await api.submit(f"budget-wait-{token[:10]}", writer(token, budget))

    def waiting(run: dict[str, Any]) -> None:
        assert run["status"] == "WAITING", run
        (approval,) = run["approvals"]
        assert approval["kind"] == "BUDGET" and approval["status"] == "WAITING", approval

    run = await api.until(run_id, waiting, timeout=120)
    assert nodes_of(run)["write"]["status"] == "WAITING"
    assert run["approvals"][0]["reason"].startswith("budget exceeded: 900 of 1000 tokens")
    assert len(await scripted.requests(token)) == 3

    decide = f"/v1/runs/{run_id}/approvals/write"
    too_little = await api.rest.post(
        decide, json={"decision": "approve", "budget": {"tokens": 1100}}
    )
    assert too_little.status_code == 202, too_little.text

    def refused(run: dict[str, Any]) -> None:
        (approval,) = run["approvals"]
        assert approval["refusals"], approval
        assert "1200 tokens" in approval["refusals"][-1]["reason"], approval

    await api.until(run_id, refused, timeout=60)
    enough = await api.rest.post(decide, json={"decision": "approve", "budget": {"tokens": 2000}})
    assert enough.status_code == 202, enough.text
    run = await ended(api, run_id)

    assert run["status"] == "COMPLETED", run
    node = nodes_of(run)["write"]
    assert node["status"] == "SUCCEEDED" and node["attempts"] == 2, node
    assert run["approvals"][0]["status"] == "APPROVED"
    assert run["spend"]["tokens"] == 1200  # what was spent before the raise still counts
    assert run["budget"]["tokens"] == 2000
    assert len(await scripted.requests(token)) == 4


@pytest.fixture
async def pg(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(services.postgres_dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_a_tenant_limits_the_models_and_max_tokens_of_its_runs(
    services: Settings, api: RunClient, scripted: ScriptedLLMClient, pg: asyncpg.Pool
) -> None:
    tenant = (await api.rest.get("/v1/limits")).json()  # the caller's tenant's limits
    assert tenant["agents"]["max_tokens"] == AgentLimits().max_tokens
    me = await pg.fetchval(
        "SELECT tenant FROM api_keys WHERE key_id = $1",
        api.rest.headers["Authorization"].split("_")[1],
    )
    agents = AgentLimits(max_tokens=500, allowed_models=("gpt-4o-mini",))
    await LimitsStore(pg).put(me, TenantLimits(agents=agents))

    async def applied() -> None:
        r = await api.rest.get("/v1/limits")
        assert r.json()["agents"]["max_tokens"] == 500, r.text

    await eventually(applied, timeout=10)
    token = uuid.uuid4().hex
    refused = await api.rest.post(
        "/v1/workflows", json={"name": f"o3-{token[:8]}", "definition": writer(token, model="o3")}
    )
    assert refused.status_code == 422, refused.text
    assert "'o3'" in refused.text

    await scripted.add_script(token, [finishing(), finishing(), finishing()])
    sent = []
    for cap in (2000, 200, None):
        config = {"model": "gpt-4o-mini"} | ({"max_tokens": cap} if cap else {})
        run_id, _ = await api.submit(f"cap-{cap}-{token[:8]}", writer(token, **config))
        run = await ended(api, run_id)
        assert run["status"] == "COMPLETED", run
        sent.append((await scripted.requests(token))[-1]["body"]["max_tokens"])
    assert sent == [500, 200, 500]
