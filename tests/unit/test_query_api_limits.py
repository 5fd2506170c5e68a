"""The query API's other limits: capped lists, batched events and approvals, a rate per
tenant, and a cap on each tenant's open subscriptions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from auth import Principal
from infra.settings import Settings
from query_api import app as query_app
from query_api import db
from query_api.context import ReadContext
from query_api.errors import TooManySubscriptions
from query_api.loaders import approvals_loader, events_loader
from query_api.schema import schema
from query_api.settings import QueryApiSettings
from query_api.tenant_subscriptions import TenantSubscriptions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakePool:
    """Answers ``fetch`` with one row per run id for each page asked, and counts queries."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def fetch(self, sql: str, run_ids: list[str], *args: Any) -> list[dict[str, Any]]:
        self.calls.append((run_ids, *args))
        return [{"run_id": r, "seq": 1, "args": args} for r in sorted(run_ids)]


# --- lists that were returned whole take `first` ------------------------------------------


def _run_row() -> dict[str, Any]:
    return {
        "run_id": "r",
        "status": "RUNNING",
        "workflow_id": "w",
        "workflow_name": "w",
        "version": "v1",
        "input": None,
        "output": None,
        "error": None,
        "created_at": T0,
        "updated_at": T0,
        "started_at": None,
        "finished_at": None,
        "projection_error": None,
    }


@pytest.fixture
def run_context(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    async def run(_pool: Any, tenant: str, run_id: str) -> dict[str, Any]:
        return _run_row()

    monkeypatch.setattr(db, "run", run)

    def loader(*ids: str) -> SimpleNamespace:
        async def load(_run_id: str) -> list[SimpleNamespace]:
            return [SimpleNamespace(id=i, node_id=i) for i in ids]

        return SimpleNamespace(load=load)

    return SimpleNamespace(
        pool=None,
        tenant="t",
        nodes=loader("a", "b", "c"),
        approvals=loader("x", "y"),
    )


async def test_a_runs_nodes_and_approvals_take_first(run_context: SimpleNamespace) -> None:
    query = '{ run(id: "r") { nodes(first: 2) { id } all: nodes { id } approvals(first: 1) '
    query += "{ nodeId } } }"
    result = await schema.execute(query, context_value=run_context)
    assert result.errors is None, result.errors
    assert result.data == {
        "run": {
            "nodes": [{"id": "a"}, {"id": "b"}],
            "all": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            "approvals": [{"nodeId": "x"}],
        }
    }


@pytest.mark.parametrize("field", ["nodes", "patches", "versions", "approvals", "forks"])
async def test_a_lists_first_is_bounded(run_context: SimpleNamespace, field: str) -> None:
    result = await schema.execute(
        f'{{ run(id: "r") {{ {field}(first: 501) {{ __typename }} }} }}', context_value=run_context
    )
    assert result.errors
    assert "first must be between 1 and 500, not 501" in result.errors[0].message


# --- events and approvals are read for a page of runs at once ---------------------------------


async def test_a_page_of_runs_reads_its_events_in_one_query() -> None:
    pool = FakePool()
    loader = events_loader(pool)
    pages = await asyncio.gather(*(loader.load((r, 3, 0)) for r in ("r1", "r2", "r3")))
    assert len(pool.calls) == 1
    assert pool.calls[0] == (["r1", "r2", "r3"], 0, 3)
    assert [[row["run_id"] for row in page] for page in pages] == [["r1"], ["r2"], ["r3"]]


async def test_pages_of_another_size_or_start_are_another_query() -> None:
    pool = FakePool()
    loader = events_loader(pool)
    await asyncio.gather(loader.load(("r1", 3, 0)), loader.load(("r2", 3, 5)))
    assert sorted(pool.calls) == [(["r1"], 0, 3), (["r2"], 5, 3)]


async def test_a_page_of_runs_reads_its_approvals_in_one_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = FakePool()
    monkeypatch.setattr("query_api.loaders.Approval.of", lambda row: row["run_id"])
    loader = approvals_loader(pool)
    approvals = await asyncio.gather(*(loader.load(r) for r in ("r1", "r2")))
    assert len(pool.calls) == 1
    assert approvals == [["r1"], ["r2"]]


async def test_a_subscriptions_context_forgets_a_changed_runs_event_pages() -> None:
    pool = FakePool()
    context = ReadContext(
        pool=None,  # type: ignore[arg-type]
        cas=None,  # type: ignore[arg-type]
        watcher=None,  # type: ignore[arg-type]
        settings=None,  # type: ignore[arg-type]
        tenant="t",
        events=events_loader(pool),
    )
    await context.events.load(("r1", 3, 0))
    await context.events.load(("r1", 3, 0))
    assert len(pool.calls) == 1  # cached for the connection
    context.forget_run("r1")
    await context.events.load(("r1", 3, 0))
    assert len(pool.calls) == 2  # read again: the run has changed


# --- subscriptions per tenant -------------------------------------------------------------


def test_each_tenant_has_its_own_subscription_slots() -> None:
    counted = TenantSubscriptions(limit=2)
    with counted.slot("a"), counted.slot("a"), counted.slot("b"):
        assert (counted.open("a"), counted.open("b")) == (2, 1)
        refused = pytest.raises(TooManySubscriptions, match="'a' already has 2 subscriptions open")
        with refused, counted.slot("a"):
            pass
    assert (counted.open("a"), counted.open("b")) == (0, 0)  # released, refusal included
    with counted.slot("a"):
        pass


@pytest.mark.parametrize(
    "query",
    [
        'subscription { runUpdated(id: "r") { id } }',
        'subscription { runEvents(id: "r") { cursor } }',
    ],
)
async def test_a_subscription_over_the_tenants_cap_is_refused(query: str) -> None:
    counted = TenantSubscriptions(limit=1)
    context = SimpleNamespace(pool=None, tenant="acme", subscriptions=counted)
    with counted.slot("acme"):
        stream = await schema.subscribe(query, context_value=context)
        first = await anext(aiter(stream))  # type: ignore[arg-type]
    assert first.errors
    message = first.errors[0].message
    assert "'acme' already has 1 subscriptions open" in message
    assert "AOB_QUERY_API_MAX_SUBSCRIPTIONS_PER_TENANT=1" in message


# --- the rate of HTTP queries per tenant --------------------------------------------------


def test_a_tenant_over_its_query_rate_gets_429_with_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def authenticate(_pool: Any, authorization: str | None) -> Principal | None:
        return Principal(tenant=(authorization or "").removeprefix("Bearer "), key_id="k")

    monkeypatch.setattr(query_app, "authenticate", authenticate)
    api = QueryApiSettings.model_construct(rate_per_second=0.01, rate_burst=2)
    app = query_app.create_app(Settings(), api)
    for name in ("pool", "cas", "watcher", "run_changes"):
        setattr(app.state, name, None)  # not started: no query here reads anything
    client = TestClient(app)  # no lifespan: nothing is connected

    def ask(tenant: str) -> Any:
        return client.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Authorization": f"Bearer {tenant}"},
        )

    assert [ask("a").status_code for _ in range(2)] == [200, 200]
    refused = ask("a")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert "tenant 'a' is over its query rate" in refused.json()["detail"]
    assert refused.json()["title"] == "Too Many Requests"
    assert ask("b").status_code == 200  # another tenant's bucket is its own
