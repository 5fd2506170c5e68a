"""Admission on the command API's routes: which limits each command counts against, that it is
counted only once it is valid and before anything is written, what a refusal answers (429,
``Retry-After``, the limit named), and ``/v1/limits``.

The app is ``create_app``'s, with the command side's tables, the bus and the admission check
as small fakes: what they are asked is what the routes do. The check itself (exact, across
processes) is PostgreSQL's, for the connected lane.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from auth import Principal
from cli import CLIError, api_client
from cli.main import app as cli_app
from command_api import routes
from command_api.app import create_app
from command_api.context import CommandContext, CompiledVersion, principal_of
from command_api.settings import CommandApiSettings
from infra.ratelimit import TokenBuckets
from infra.run_log import Logged
from limits.admission_check import Limit, Refusal
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from schemas import WorkflowDefinition, compile_workflow
from schemas.codec import decode_event
from schemas.position import Position
from schemas.topics import RUN_EVENTS
from schemas.workflow_ids import workflow_id_for

TENANT = "acme"
RUN = "run-1"
CREATED = datetime(2026, 12, 5, tzinfo=UTC)


def _definition(agents: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "noop"}]
    nodes += [{"id": f"a{i}", "type": "agent", "config": {"prompt": "p"}} for i in range(agents)]
    return {"nodes": nodes, "edges": [{"from": "start", "to": n["id"]} for n in nodes[1:]]}


WORKFLOWS = {"plain": 0, "pair": 2, "crowd": 3}


class Tables:
    """The command side's tables as the routes' statements read and write them."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {
            RUN: {"run_id": RUN, "workflow_id": "w", "version": "v", "created_at": CREATED}
        }
        self.limits: dict[str, str] = {}
        self.writes: list[str] = []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if "FROM workflow_registry" in query:
            row = self.versions.get(args[0]) if args[1] == TENANT else None
            wanted = args[2] if len(args) > 2 else None  # a version named, or the latest
            return row if row and wanted in (None, row["version"]) else None
        if "FROM runs_registry" in query:
            return self.runs.get(args[0]) if args[1] == TENANT else None
        if "FROM tenant_limits" in query:
            stored = self.limits.get(args[0])
            return None if stored is None else (stored,)
        raise AssertionError(f"unexpected statement: {query}")

    async def fetchval(self, query: str, *args: Any) -> Any:
        assert "FROM runs_registry" in query
        return 1 if args[0] in self.runs and args[1] == TENANT else None

    async def execute(self, query: str, *args: Any) -> str:
        if "INSERT INTO tenant_limits" in query:
            self.limits[args[0]] = args[1]
        self.writes.append(" ".join(query.split()[:3]))
        return "INSERT 0 1"


class Bus:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> Position:
        self.sent.append((topic, value))
        return Position(topic, 0, len(self.sent))


class Gate:
    """The admission check: records what each command counts against; refuses with the
    first limit while ``closed``."""

    def __init__(self) -> None:
        self.asked: list[list[Limit]] = []
        self.closed = False

    async def admit(self, limits: list[Limit]) -> Refusal | None:
        self.asked.append(list(limits))
        return Refusal(limits[0], 3) if self.closed else None

    def names(self) -> list[list[str]]:
        return [[limit.name for limit in limits] for limits in self.asked]


class Unreachable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"not expected here: .{name}")


class Stack:
    def __init__(self, scopes: frozenset[str], global_per_minute: int | None = None) -> None:
        self.tables, self.bus, self.gate = Tables(), Bus(), Gate()
        app = create_app()
        caller = Principal(tenant=TENANT, key_id="k", scopes=scopes)
        app.dependency_overrides[principal_of] = lambda: caller
        settings = CommandApiSettings(global_submissions_per_minute=global_per_minute)
        self.ctx = CommandContext(
            pool=self.tables,  # type: ignore[arg-type]
            bus=self.bus,  # type: ignore[arg-type]
            cas=Unreachable(),  # type: ignore[arg-type]
            settings=settings,
            buckets=TokenBuckets(settings.rate_per_second, settings.rate_burst),
            admissions_on=self.gate,  # type: ignore[arg-type]
        )
        app.state.commands = self.ctx
        self.client = TestClient(app, raise_server_exceptions=False)
        for name, agents in WORKFLOWS.items():
            self.publish(name, _definition(agents))

    def publish(self, name: str, definition: dict[str, Any]) -> None:
        parsed = WorkflowDefinition.model_validate(definition)
        ir = compile_workflow(parsed)
        workflow_id = workflow_id_for(TENANT, name)
        self.tables.versions[workflow_id] = {
            "workflow_id": workflow_id,
            "version": ir.version,
            "name": name,
            "definition_ref": f"cas://sha256:{ir.version}",
            "ir_ref": f"cas://sha256:{ir.version}",
            "event_id": "e",
            "position": "p",
        }
        self.ctx.remember(CompiledVersion(parsed.canonical(), ir))


SUBMITTER = frozenset({"submit", "patch", "approve"})


@pytest.mark.parametrize(("workflow", "tier"), [("plain", "light"), ("pair", "agentic")])
def test_a_run_counts_in_its_tier_and_the_tenants(workflow: str, tier: str) -> None:
    stack = Stack(SUBMITTER)
    r = stack.client.post("/v1/runs", json={"workflow_id": workflow})
    assert r.status_code == 202, r.text
    (limits,) = stack.gate.asked
    assert [(lim.name, lim.key) for lim in limits] == [
        (f"tier:{tier}", f"tenant:acme:tier:{tier}"),
        ("submissions", "tenant:acme:submissions"),
    ]
    assert len(stack.bus.sent) == 1


def test_the_operators_global_limit_counts_too_when_set() -> None:
    stack = Stack(SUBMITTER, global_per_minute=900)
    assert stack.client.post("/v1/runs", json={"workflow_id": "crowd"}).status_code == 202
    assert stack.gate.names() == [["tier:heavy", "submissions", "global"]]
    assert stack.gate.asked[0][2].per_minute == 900


def test_the_tenants_own_tiers_and_numbers_are_used() -> None:
    stack = Stack(SUBMITTER)
    own = {
        "admission": {
            "tiers": [
                {"name": "any", "per_minute": 7},
            ],
            "submissions_per_minute": 11,
        }
    }
    stack.tables.limits[TENANT] = TenantLimits.model_validate(own).model_dump_json()
    assert stack.client.post("/v1/runs", json={"workflow_id": "pair"}).status_code == 202
    ((tier, tenant),) = stack.gate.asked
    assert (tier.name, tier.per_minute, tenant.per_minute) == ("tier:any", 7, 11)


def test_a_refused_run_is_a_429_naming_its_limit_and_nothing_is_written() -> None:
    stack = Stack(SUBMITTER)
    stack.gate.closed = True
    r = stack.client.post("/v1/runs", json={"workflow_id": "pair"})
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "3"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "tenant acme: tier agentic allows 20 submissions a minute; retry in 3 s",
        "limit": {"name": "tier:agentic", "per_minute": 20, "retry_after_s": 3},
    }
    assert stack.bus.sent == []
    assert not [w for w in stack.tables.writes if "runs_registry" in w]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"workflow_id": "nonesuch"}, 404),
        ({"workflow_id": "plain", "version": "f" * 64}, 404),
        ({"workflow_id": "plain", "input": {"blob": "x" * 300_000}}, 413),
        ({"workflow_id": "plain", "extra": 1}, 422),
    ],
)
def test_a_run_that_is_not_valid_uses_up_nothing(body: dict[str, Any], status: int) -> None:
    stack = Stack(SUBMITTER)
    assert stack.client.post("/v1/runs", json=body).status_code == status
    assert stack.gate.asked == []


@pytest.mark.parametrize(
    ("path", "body", "limit"),
    [
        (
            f"/v1/runs/{RUN}/patches",
            {"patch": [{"op": "remove", "path": "/nodes/1"}], "reason": "r"},
            "patches",
        ),
        (f"/v1/runs/{RUN}/approvals/gate", {"decision": "approve"}, "approvals"),
    ],
)
def test_patches_and_approvals_have_limits_of_their_own(
    path: str, body: dict[str, Any], limit: str
) -> None:
    stack = Stack(SUBMITTER)
    assert stack.client.post(path, json=body).status_code == 202
    assert stack.gate.names() == [[limit]]
    assert stack.gate.asked[0][0].key == f"tenant:acme:{limit}"
    stack.gate.closed = True
    r = stack.client.post(path, json=body)
    assert r.status_code == 429 and r.json()["limit"]["name"] == limit
    assert len(stack.bus.sent) == 1
    # Of a run that is not the tenant's: a 404, and nothing counted.
    other = path.replace(RUN, "run-of-another")
    assert stack.client.post(other, json=body).status_code == 404
    assert len(stack.gate.asked) == 2


def test_a_cancel_is_never_held_back() -> None:
    stack = Stack(SUBMITTER)
    stack.gate.closed = True
    assert stack.client.post(f"/v1/runs/{RUN}/cancel", json={}).status_code == 202
    assert stack.gate.asked == []


def test_a_fork_counts_against_the_forks_limit_once_it_is_valid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = Stack(SUBMITTER)
    assert stack.client.post("/v1/runs", json={"workflow_id": "plain"}).status_code == 202
    submitted = decode_event(stack.bus.sent[0][1])
    history = [Logged(1, Position(RUN_EVENTS, 0, 41), submitted)]

    async def read_run(bootstrap: str, run_id: str, **_: Any) -> list[Logged]:
        return history

    monkeypatch.setattr(routes, "read_run", read_run)
    stack.gate.asked.clear()
    # A point outside the run's history: a 422, nothing counted.
    assert stack.client.post(f"/v1/runs/{RUN}/forks", json={"at": 9}).status_code == 422
    assert stack.gate.asked == []
    r = stack.client.post(f"/v1/runs/{RUN}/forks", json={"at": 1})
    assert r.status_code == 202, r.text
    assert stack.gate.names() == [["forks"]]
    stack.gate.closed = True
    r = stack.client.post(f"/v1/runs/{RUN}/forks", json={"at": 1})
    assert r.status_code == 429
    assert r.json()["limit"] == {"name": "forks", "per_minute": 60, "retry_after_s": 3}
    assert len(stack.bus.sent) == 2  # the submission and the first fork


def test_a_replayed_request_is_not_counted_again() -> None:
    class Keyed(Tables):
        """The idempotency table holding the first answer to one key."""

        async def fetchval(self, query: str, *args: Any) -> Any:
            if "idempotency_keys" in query:
                return None  # reserved by the first request: this one waits for its answer
            return await super().fetchval(query, *args)

        async def fetchrow(self, query: str, *args: Any) -> Any:
            if "idempotency_keys" in query:
                return {"request_hash": self.fingerprint, "status_code": 202, "response": "{}"}
            return await super().fetchrow(query, *args)

    stack = Stack(SUBMITTER)
    keyed = Keyed()
    keyed.versions = stack.tables.versions
    stack.ctx.pool = keyed  # type: ignore[assignment]
    body = {"workflow_id": "plain"}
    keyed.fingerprint = routes.request_hash("POST", "/v1/runs", body)  # type: ignore[attr-defined]
    r = stack.client.post("/v1/runs", json=body, headers={"Idempotency-Key": "k1"})
    assert (r.status_code, r.json()) == (202, {})
    assert stack.gate.asked == []


def test_the_request_rates_429_names_its_limit_too() -> None:
    stack = Stack(SUBMITTER)
    stack.ctx.buckets = TokenBuckets(rate=0.5, burst=1, clock=lambda: 0.0)  # time stands still
    app = stack.client.app
    app.dependency_overrides.clear()  # type: ignore[attr-defined]

    async def authenticated() -> Principal:
        stack.ctx.check_rate(TENANT)
        return Principal(tenant=TENANT, key_id="k", scopes=SUBMITTER)

    app.dependency_overrides[principal_of] = authenticated  # type: ignore[attr-defined]
    assert stack.client.post("/v1/runs", json={"workflow_id": "plain"}).status_code == 202
    r = stack.client.post("/v1/runs", json={"workflow_id": "plain"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["limit"] == {
        "name": "requests",
        "per_second": 0.5,
        "burst": 1,
        "retry_after_s": 2,
    }
    assert "this process allows 0.5 requests a second" in r.json()["detail"]


# --- /v1/limits -----------------------------------------------------------------------------------


def test_get_shows_the_defaults_then_what_an_admin_put() -> None:
    stack = Stack(frozenset({"admin"}))
    r = stack.client.get("/v1/limits")
    assert r.status_code == 200
    assert r.json() == TenantLimits().model_dump(mode="json")
    assert r.json()["admission"]["tiers"][1] == {
        "name": "agentic",
        "max_agent_nodes": 2,
        "per_minute": 20,
    }
    wanted = r.json()
    wanted["admission"]["forks_per_minute"] = 3
    r = stack.client.put("/v1/limits", json=wanted)
    assert r.status_code == 200, r.text
    assert r.json() == wanted
    assert stack.client.get("/v1/limits").json() == wanted
    assert (
        TenantLimits.model_validate_json(stack.tables.limits[TENANT]).admission.forks_per_minute
        == 3
    )


def test_put_of_an_empty_document_goes_back_to_the_defaults() -> None:
    stack = Stack(frozenset({"admin"}))
    assert stack.client.put("/v1/limits", json={}).json() == TenantLimits().model_dump(mode="json")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"admission": {"forks_per_minute": -1}}, "admission.forks_per_minute: "),
        ({"admission": {"tiers": [{"name": "a", "max_agent_nodes": 1, "per_minute": 1}]}}, "last"),
        ({"admissions": {}}, "admissions: unknown field"),
        ({"admission": {"tiers": "many"}}, "admission.tiers: "),
    ],
)
def test_put_of_a_bad_document_is_a_422_with_reasons_and_stores_nothing(
    body: dict[str, Any], says: str
) -> None:
    stack = Stack(frozenset({"admin"}))
    r = stack.client.put("/v1/limits", json=body)
    assert r.status_code == 422, r.text
    assert says in r.json()["detail"] and r.json()["errors"]
    assert stack.tables.limits == {}


def test_limits_are_the_callers_tenants_own() -> None:
    stack = Stack(frozenset({"admin"}))
    stack.tables.limits["umbrella"] = "{}"
    assert stack.client.put("/v1/limits", json={}).status_code == 200
    assert set(stack.tables.limits) == {"umbrella", TENANT}
    assert isinstance(stack.ctx.limits, LimitsStore)


# --- aob limits show|set --------------------------------------------------------------------------


@pytest.fixture
def cli_to(monkeypatch: pytest.MonkeyPatch) -> Callable[[Stack], CliRunner]:
    """A CliRunner whose REST calls reach ``stack``'s app in process (no server)."""

    def wire(stack: Stack) -> CliRunner:
        transport = httpx.ASGITransport(app=stack.client.app)
        monkeypatch.setattr(
            api_client.httpx,
            "AsyncClient",
            functools.partial(httpx.AsyncClient, transport=transport),
        )
        monkeypatch.setenv("AOB_API_KEY", "aob_k_secret")
        return CliRunner()

    return wire


def test_the_cli_shows_and_sets_the_tenants_limits(
    cli_to: Callable[[Stack], CliRunner], tmp_path: Path
) -> None:
    stack = Stack(frozenset({"admin"}))
    runner = cli_to(stack)
    shown = runner.invoke(cli_app, ["limits", "show"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document == TenantLimits().model_dump(mode="json")
    document["admission"]["tiers"][0]["per_minute"] = 42
    file = tmp_path / "limits.json"
    file.write_text(json.dumps(document))
    stored = runner.invoke(cli_app, ["limits", "set", str(file)])
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.output) == document
    assert json.loads(runner.invoke(cli_app, ["limits", "show"]).output) == document


def test_the_cli_tells_a_refused_document_in_one_line(
    cli_to: Callable[[Stack], CliRunner], tmp_path: Path
) -> None:
    runner = cli_to(Stack(frozenset({"admin"})))
    file = tmp_path / "limits.json"
    file.write_text('{"admission": {"patches_per_minute": "many"}}')
    refused = runner.invoke(cli_app, ["limits", "set", str(file)])
    assert refused.exit_code == 1
    # The CLIError is what `aob` prints as its one line (cli.main).
    assert isinstance(refused.exception, CLIError)
    assert str(refused.exception).startswith("HTTP 422: admission.patches_per_minute: ")
    file.write_text("[1]")
    not_an_object = runner.invoke(cli_app, ["limits", "set", str(file)])
    assert "a limits document is a JSON object" in str(not_an_object.exception)
    missing = runner.invoke(cli_app, ["limits", "set", str(tmp_path / "nonesuch.json")])
    assert missing.exit_code == 1 and "cannot read" in str(missing.exception)


def test_the_cli_needs_an_admin_key_to_set(
    cli_to: Callable[[Stack], CliRunner], tmp_path: Path
) -> None:
    runner = cli_to(Stack(frozenset({"read"})))
    assert runner.invoke(cli_app, ["limits", "show"]).exit_code == 0
    file = tmp_path / "limits.json"
    file.write_text("{}")
    refused = runner.invoke(cli_app, ["limits", "set", str(file)])
    assert str(refused.exception) == "HTTP 403: this API key lacks the 'admin' scope"
