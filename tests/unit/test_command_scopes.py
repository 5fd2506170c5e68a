"""Scopes on the command API: each /v1 route needs its scope, a key without it gets a 403 that
names it (before any database round trip), and an admin key manages its tenant's keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from auth import SCOPES, Principal
from auth.scopes import DEFAULT_SCOPES
from command_api.app import create_app
from command_api.context import CommandContext, principal_of
from command_api.settings import CommandApiSettings
from infra.ratelimit import TokenBuckets

# The scope each route needs (T17's shared decisions).
ROUTE_SCOPES = {
    ("POST", "/v1/workflows"): "publish",
    ("POST", "/v1/runs"): "submit",
    ("POST", "/v1/runs/{run_id}/cancel"): "submit",
    ("POST", "/v1/runs/{run_id}/forks"): "submit",
    ("POST", "/v1/runs/{run_id}/patches"): "patch",
    ("POST", "/v1/runs/{run_id}/approvals/{node_id}"): "approve",
    ("POST", "/v1/keys"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
    ("PUT", "/v1/secrets/{name}"): "admin",
    ("GET", "/v1/secrets"): "admin",
    ("DELETE", "/v1/secrets/{name}"): "admin",
    ("PUT", "/v1/node-types/{name}"): "publish",
    ("GET", "/v1/node-types"): "publish",
    ("GET", "/v1/limits"): "read",
    ("PUT", "/v1/limits"): "admin",
    ("POST", "/v1/hooks"): "publish",
    ("GET", "/v1/hooks"): "publish",
    ("DELETE", "/v1/hooks/{hook_id}"): "publish",
    ("POST", "/v1/schedules"): "publish",
    ("GET", "/v1/schedules"): "publish",
    ("GET", "/v1/schedules/{schedule_id}"): "publish",
    ("POST", "/v1/schedules/{schedule_id}/pause"): "publish",
    ("POST", "/v1/schedules/{schedule_id}/resume"): "publish",
    ("DELETE", "/v1/schedules/{schedule_id}"): "publish",
    ("POST", "/v1/events"): "submit",
}
# Routes an outside system calls without an API key: a webhook delivery proves itself by its
# signature (``triggers.signatures``).
KEYLESS = {("POST", "/v1/hooks/{hook_id}")}

# A valid call of each route: a refusal by scope must come before anything else looks deeper.
CALLS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("POST", "/v1/workflows"): (
        "/v1/workflows",
        {"name": "w", "definition": {"nodes": [{"id": "a", "type": "noop"}]}},
    ),
    ("POST", "/v1/runs"): ("/v1/runs", {"workflow_id": "w"}),
    ("POST", "/v1/runs/{run_id}/cancel"): ("/v1/runs/r1/cancel", {}),
    ("POST", "/v1/runs/{run_id}/forks"): ("/v1/runs/r1/forks", {"at": 3}),
    ("POST", "/v1/runs/{run_id}/patches"): (
        "/v1/runs/r1/patches",
        {"patch": [{"op": "remove", "path": "/nodes/0"}], "reason": "r"},
    ),
    ("POST", "/v1/runs/{run_id}/approvals/{node_id}"): (
        "/v1/runs/r1/approvals/gate",
        {"decision": "approve"},
    ),
    ("POST", "/v1/keys"): ("/v1/keys", {"scopes": ["read"]}),
    ("GET", "/v1/keys"): ("/v1/keys", None),
    ("DELETE", "/v1/keys/{key_id}"): ("/v1/keys/0123456789ab", None),
    ("PUT", "/v1/secrets/{name}"): ("/v1/secrets/TOKEN", {"value": "v"}),
    ("PUT", "/v1/node-types/{name}"): ("/v1/node-types/shout", {"config_schema": {}}),
    ("GET", "/v1/node-types"): ("/v1/node-types", None),
    ("GET", "/v1/secrets"): ("/v1/secrets", None),
    ("DELETE", "/v1/secrets/{name}"): ("/v1/secrets/TOKEN", None),
    ("GET", "/v1/limits"): ("/v1/limits", None),
    ("PUT", "/v1/limits"): ("/v1/limits", {}),
    ("POST", "/v1/hooks"): ("/v1/hooks", {"workflow": "w"}),
    ("GET", "/v1/hooks"): ("/v1/hooks", None),
    ("DELETE", "/v1/hooks/{hook_id}"): ("/v1/hooks/h1", None),
    ("POST", "/v1/schedules"): ("/v1/schedules", {"workflow": "w", "every": "2s"}),
    ("GET", "/v1/schedules"): ("/v1/schedules", None),
    ("GET", "/v1/schedules/{schedule_id}"): ("/v1/schedules/s1", None),
    ("POST", "/v1/schedules/{schedule_id}/pause"): ("/v1/schedules/s1/pause", None),
    ("POST", "/v1/schedules/{schedule_id}/resume"): ("/v1/schedules/s1/resume", None),
    ("DELETE", "/v1/schedules/{schedule_id}"): ("/v1/schedules/s1", None),
    ("POST", "/v1/events"): ("/v1/events", {"name": "payment", "key": "A-1"}),
}


class Unreachable:
    """Where PostgreSQL, Kafka and MinIO would be: a refused call must not need them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the request got past the scope check to .{name}")


def _client(scopes: frozenset[str], pool: Any = None, tenant: str = "acme") -> TestClient:
    app = create_app()
    caller = Principal(tenant=tenant, key_id="k", scopes=scopes)
    app.dependency_overrides[principal_of] = lambda: caller
    settings = CommandApiSettings()
    app.state.commands = CommandContext(
        pool=pool or Unreachable(),
        bus=Unreachable(),  # type: ignore[arg-type]
        cas=Unreachable(),  # type: ignore[arg-type]
        settings=settings,
        buckets=TokenBuckets(settings.rate_per_second, settings.rate_burst),
        secrets=Unreachable(),  # type: ignore[arg-type]
        hooks=Unreachable(),  # type: ignore[arg-type]
        schedules=Unreachable(),  # type: ignore[arg-type]
    )
    return TestClient(app, raise_server_exceptions=False)


def _call(client: TestClient, route: tuple[str, str]) -> Any:
    url, body = CALLS[route]
    return client.request(route[0], url, json=body)


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute of an app, through the routers it includes (FastAPI keeps an included
    router as one entry that holds it)."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _api_routes(included.routes)
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def _route_scopes() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for route in _api_routes(create_app().routes):
        if route.path.startswith("/v1"):
            scopes = [
                d.call.scope  # type: ignore[union-attr]
                for d in route.dependant.dependencies
                if hasattr(d.call, "scope")
            ]
            for method in route.methods:
                found[(method, route.path)] = scopes
    return found


def test_every_v1_route_needs_exactly_its_scope() -> None:
    expected = {route: [scope] for route, scope in ROUTE_SCOPES.items()}
    assert _route_scopes() == expected | {route: [] for route in KEYLESS}


@pytest.mark.parametrize("route", sorted(ROUTE_SCOPES))
def test_a_key_without_the_routes_scope_gets_a_403_naming_it(route: tuple[str, str]) -> None:
    scope = ROUTE_SCOPES[route]
    r = _call(_client(frozenset(SCOPES) - {scope, "admin"}), route)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": f"this API key lacks the {scope!r} scope",
        "scope": scope,
    }


@pytest.mark.parametrize("route", sorted(ROUTE_SCOPES))
def test_an_admin_key_passes_every_scope_check(route: tuple[str, str]) -> None:
    # Past the check the route reaches for the database, which is not there: a 503.
    assert _call(_client(frozenset({"admin"})), route).status_code == 503


def test_a_key_with_only_submit_cannot_approve_what_it_submitted() -> None:
    client = _client(frozenset({"submit"}))
    r = _call(client, ("POST", "/v1/runs/{run_id}/approvals/{node_id}"))
    assert r.status_code == 403 and "'approve'" in r.json()["detail"]


# --- /v1/keys -----------------------------------------------------------------------------


def _row(key_id: str, tenant: str = "acme", **over: Any) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "tenant": tenant,
        "name": None,
        "scopes": ["read"],
        "created_at": datetime(2026, 12, 5, tzinfo=UTC),
        "last_used_at": None,
        "revoked_at": None,
        **over,
    }


class KeysPool:
    """The api_keys table of two tenants, as the key routes' statements read it."""

    def __init__(self) -> None:
        self.rows = {
            "0123456789ab": _row("0123456789ab"),
            "bbbbbbbbbbbb": _row("bbbbbbbbbbbb", "b"),
        }
        self.inserted: list[tuple[object, ...]] = []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if query.startswith("INSERT"):
            key_id, tenant, _digest, scopes, name = args
            self.inserted.append(args)
            return _row(key_id, tenant, scopes=scopes, name=name)
        key_id, tenant = args  # the revocation: of the caller's tenant only
        row = self.rows.get(key_id)
        if row is None or row["tenant"] != tenant:
            return None
        row["revoked_at"] = datetime(2026, 12, 5, 1, tzinfo=UTC)
        return row

    async def fetch(self, query: str, tenant: str) -> list[Any]:
        return [r for r in self.rows.values() if r["tenant"] == tenant]


def test_an_admin_makes_a_key_of_its_tenant_shown_once() -> None:
    pool = KeysPool()
    r = _client(frozenset({"admin"}), pool).post(
        "/v1/keys", json={"scopes": ["submit", "read"], "name": "ci"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key"].startswith(f"aob_{body['key_id']}_")
    assert body["tenant"] == "acme" and body["scopes"] == ["read", "submit"]
    assert body["name"] == "ci"
    assert pool.inserted[0][1] == "acme"


def test_a_key_made_without_scopes_gets_the_default_ones() -> None:
    r = _client(frozenset({"admin"}), KeysPool()).post("/v1/keys")
    assert r.status_code == 201, r.text
    assert set(r.json()["scopes"]) == DEFAULT_SCOPES


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"scopes": ["read", "root"]}, "scopes: unknown scope 'root'"),
        ({"scopes": []}, "give at least one scope"),
        ({"name": "a\tb"}, "printable"),
        ({"name": "x" * 101}, "name"),
        ({"scope": ["read"]}, "unknown field"),
    ],
)
def test_a_key_outside_the_known_scopes_is_a_422_before_any_statement(
    body: dict[str, Any], says: str
) -> None:
    r = _client(frozenset({"admin"})).post("/v1/keys", json=body)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"]


def test_the_list_shows_the_tenants_keys_without_a_hash_or_a_secret() -> None:
    r = _client(frozenset({"admin"}), KeysPool()).get("/v1/keys")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert [k["key_id"] for k in keys] == ["0123456789ab"]
    assert set(keys[0]) == {
        "key_id",
        "tenant",
        "name",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    }


def test_an_admin_revokes_its_tenants_key_and_not_another_tenants() -> None:
    pool = KeysPool()
    client = _client(frozenset({"admin"}), pool)
    r = client.delete("/v1/keys/0123456789ab")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    r = client.delete("/v1/keys/bbbbbbbbbbbb")
    assert r.status_code == 404 and r.json()["detail"] == "key 'bbbbbbbbbbbb' not found"
    assert pool.rows["bbbbbbbbbbbb"]["revoked_at"] is None
    assert client.delete("/v1/keys/nonesuch").status_code == 404
