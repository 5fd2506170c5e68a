"""The command API's side of agent budgets: which budget a run is bound to, the tenant's
allowed models refused at publish and submit (422 naming each), and the shapes of a budget
and of a raise. The app is the real one, with no PostgreSQL, Kafka or MinIO behind it: every
refusal here comes before them; the tenant's limits come from a store over a fake table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auth import Principal
from command_api.app import create_app
from command_api.budgets import check_models, run_limits
from command_api.context import CommandContext, principal_of
from command_api.errors import InvalidInput
from command_api.settings import CommandApiSettings
from infra.ratelimit import TokenBuckets
from limits.budgets import AgentLimits
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from schemas.budgets import Budget, Price


class Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the request got past the refusal to .{name}")


class LimitsTable:
    """The ``tenant_limits`` table, as a store reads it: one document for one tenant."""

    def __init__(self, tenant: str, limits: TenantLimits) -> None:
        self.rows = {tenant: json.dumps(limits.model_dump(mode="json"))}

    async def execute(self, query: str, *args: object) -> str:
        raise AssertionError("nothing is written here")

    async def fetchrow(self, query: str, *args: object) -> Any:
        row = self.rows.get(str(args[0]))
        return None if row is None else (row,)


def client(agents: AgentLimits) -> TestClient:
    app = create_app()
    app.dependency_overrides[principal_of] = lambda: Principal(tenant="acme", key_id="k")
    settings = CommandApiSettings()
    app.state.commands = CommandContext(
        pool=Unreachable(),  # type: ignore[arg-type]
        bus=Unreachable(),  # type: ignore[arg-type]
        cas=Unreachable(),  # type: ignore[arg-type]
        settings=settings,
        buckets=TokenBuckets(settings.rate_per_second, settings.rate_burst),
        limits_store=LimitsStore(LimitsTable("acme", TenantLimits(agents=agents))),
    )
    return TestClient(app, raise_server_exceptions=False)


def agent(node_id: str, model: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"prompt": "write"}
    if model is not None:
        config["model"] = model
    return {"id": node_id, "type": "agent", "config": config}


def definition(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"nodes": list(nodes), **extra}


ONLY_MINI = AgentLimits(allowed_models=("gpt-4o-mini",))


# --- allowed models -----------------------------------------------------------------------


def test_publishing_a_model_the_tenant_does_not_allow_is_422_naming_it() -> None:
    body = {"name": "w", "definition": definition(agent("a", "o3"), agent("b", "gpt-4o-mini"))}
    r = client(ONLY_MINI).post("/v1/workflows", json=body)
    assert r.status_code == 422
    problem = r.json()
    assert "'o3'" in problem["detail"]
    assert problem["errors"] == [
        "node 'a' names model 'o3', which the tenant does not allow (allowed: gpt-4o-mini)"
    ]


def test_every_model_refused_is_named_and_an_unnamed_model_is_the_workers_to_check() -> None:
    nodes = [agent("a", "o3"), agent("b", "claude-opus-4"), agent("c"), {"id": "d", "type": "noop"}]
    with pytest.raises(InvalidInput) as e:
        check_models(nodes, ONLY_MINI)
    assert e.value.extra["errors"] == [
        "node 'a' names model 'o3', which the tenant does not allow (allowed: gpt-4o-mini)",
        "node 'b' names model 'claude-opus-4', which the tenant does not allow "
        "(allowed: gpt-4o-mini)",
    ]
    check_models(nodes, AgentLimits())  # no list: any model
    check_models([agent("c")], ONLY_MINI)


def test_a_submission_checks_the_models_again() -> None:
    # The tenant's list may have changed since the version was published.
    with pytest.raises(InvalidInput, match="'o3'"):
        run_limits(definition(agent("a", "o3")), None, ONLY_MINI)


# --- the run's budget ---------------------------------------------------------------------


TENANT = AgentLimits(
    budget=Budget(tokens=50_000),
    max_tokens=1024,
    allowed_models=("gpt-4o-mini", "o3"),
    prices={"o3": Price(input_per_million=1, output_per_million=2)},
)


def test_a_run_takes_its_own_budget_then_its_workflows_then_the_tenants() -> None:
    own = Budget(tokens=1000, on_exceed="wait")
    workflow = definition(agent("a"), budget={"usd": 2.5})
    assert run_limits(workflow, own, TENANT).budget == own
    assert run_limits(workflow, None, TENANT).budget == Budget(usd=2.5)
    assert run_limits(definition(agent("a")), None, TENANT).budget == Budget(tokens=50_000)
    assert run_limits(definition(agent("a")), None, AgentLimits()).budget is None


def test_a_run_records_the_tenants_cap_allowed_models_and_prices() -> None:
    limits = run_limits(definition(agent("a")), None, TENANT)
    assert limits.max_tokens == 1024
    assert limits.allowed_models == ("gpt-4o-mini", "o3")
    assert limits.prices == TENANT.prices


def test_a_budget_in_dollars_refuses_a_named_model_without_a_price() -> None:
    tenant = AgentLimits(prices={"house-model": Price(input_per_million=1, output_per_million=1)})
    priced = definition(agent("a", "house-model"), agent("b", "gpt-4o-2024-08-06"), agent("c"))
    assert run_limits(priced, Budget(usd=1), tenant).budget == Budget(usd=1)
    with pytest.raises(InvalidInput) as e:
        run_limits(definition(agent("a", "mystery-7b")), Budget(usd=1), tenant)
    assert e.value.extra["errors"] == ["node 'a' names model 'mystery-7b', which has no price"]
    run_limits(definition(agent("a", "mystery-7b")), Budget(tokens=10), tenant)  # tokens: fine


@pytest.mark.parametrize(
    ("budget", "says"),
    [
        ({"on_exceed": "wait"}, "a budget needs `tokens`, `usd` or both"),
        ({"tokens": 0}, "greater than or equal to 1"),
        ({"usd": -1}, "greater than 0"),
        ({"tokens": 10, "on_exceed": "retry"}, "'fail' or 'wait'"),
        ({"tokens": 10, "per": "run"}, "per"),
    ],
)
def test_a_budget_without_a_bound_or_of_the_wrong_shape_is_422(
    budget: dict[str, Any], says: str
) -> None:
    r = client(AgentLimits()).post("/v1/runs", json={"workflow_id": "w", "budget": budget})
    assert r.status_code == 422
    assert says in json.dumps(r.json())
    body = {"name": "w", "definition": definition(agent("a"), budget=budget)}
    r = client(AgentLimits()).post("/v1/workflows", json=body)
    assert r.status_code == 422
    assert says in json.dumps(r.json())


# --- raising a budget ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"decision": "reject", "budget": {"tokens": 2000}}, "only with decision `approve`"),
        ({"decision": "approve", "budget": {}}, "a raise names `tokens`, `usd` or both"),
        ({"decision": "approve", "budget": {"tokens": 2000, "on_exceed": "fail"}}, "on_exceed"),
    ],
)
def test_a_raise_is_given_with_approve_only_and_names_a_bound(
    body: dict[str, Any], says: str
) -> None:
    r = client(AgentLimits()).post("/v1/runs/r1/approvals/write", json=body)
    assert r.status_code == 422
    assert says in json.dumps(r.json())
