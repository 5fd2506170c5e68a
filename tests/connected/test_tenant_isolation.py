"""Two tenants on the running system: the one holds a workflow, a run waiting for an approval,
a patch, a fork, keys and a secret; the other calls every REST route, every GraphQL root and
nested field, both subscriptions and every CLI command that takes an id, with the first's
ids and names (UUID-shaped ones included). Nothing of the first tenant is read or changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from auth import issue_key
from cli import CLIError
from cli.main import app
from infra.settings import Settings
from tests.connected.graphql_ws import socket
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = pytest.mark.connected

WAITING = {
    "nodes": [
        {"id": "prepare", "type": "transform", "config": {"output": {"n": 1}}},
        {"id": "review", "type": "hitl", "config": {"prompt": "Go on?"}},
        {"id": "done", "type": "noop"},
    ],
    "edges": [
        {"from": "prepare", "to": "review"},
        {"from": "review", "to": "done", "when": "approved"},
    ],
}
OTHER_DEFINITION = {"nodes": [{"id": "only", "type": "noop"}], "edges": []}

RUN = """query($id: ID!, $after: String) { run(id: $id, after: $after) {
  id status version workflowId
  nodes { id status }
  approvals { nodeId status }
  patches { id status }
  versions { seq version }
  forks { id }
  forkedFrom { runId run { id } }
  events(first: 100) { edges { node { type } } }
} }"""
WORKFLOW = """query($id: ID!) { workflow(id: $id) {
  id name latestVersion versions { version definition } } }"""
ALL_MINE = """query($wf: ID) {
  workflows(first: 100) { edges { node { id name } } }
  runs(first: 100, filter: {workflowId: $wf}) { edges { node { id } } }
  pendingApprovals(first: 100) { edges { node { runId nodeId } } }
}"""
RUN_UPDATED = "subscription($id: ID!) { runUpdated(id: $id) { id status } }"
RUN_EVENTS = "subscription($id: ID!) { runEvents(id: $id) { node { id type } } }"


class Tenant:
    """A tenant with an admin key and a submit-and-read key, and clients of both APIs."""

    def __init__(self, name: str, rest: httpx.AsyncClient, gql: httpx.AsyncClient, key: str):
        self.name, self.rest, self.gql, self.key = name, rest, gql, key
        self.client = RunClient(rest, gql, RUN)

    async def gql_data(self, query: str, **variables: Any) -> dict[str, Any]:
        return await self.client.query(query, variables)


@pytest.fixture
async def owner(services: Settings, unique: str) -> AsyncIterator[Tenant]:
    name = f"own-{unique[:10]}"
    key = await issue_key(services.postgres_dsn, name, scopes=["admin"])
    async with http_clients(services, key) as (rest, gql):
        yield Tenant(name, rest, gql, key)


@pytest.fixture
async def intruder(services: Settings, unique: str) -> AsyncIterator[Tenant]:
    name = f"int-{unique[:10]}"
    key = await issue_key(services.postgres_dsn, name, scopes=["admin"])
    async with http_clients(services, key) as (rest, gql):
        yield Tenant(name, rest, gql, key)


def _cli(api_key: str, *args: str) -> tuple[int, str]:
    """``aob <args>`` as a user at a terminal runs it, with ``api_key`` as AOB_API_KEY."""
    result = CliRunner().invoke(app, list(args), env={"AOB_API_KEY": api_key})
    if isinstance(result.exception, CLIError):  # `aob` prints it as one line and exits 1
        return 1, str(result.exception)
    return result.exit_code, result.output


async def _owners_world(owner: Tenant, unique: str) -> dict[str, Any]:
    """The owner's workflow, a run waiting for its approval, a rejected patch and a fork."""
    name = f"shared-name-{unique[:8]}"
    r = await owner.rest.post("/v1/workflows", json={"name": name, "definition": WAITING})
    assert r.status_code == 201, r.text
    published = r.json()
    r = await owner.rest.post(
        "/v1/runs", json={"workflow_id": published["workflow_id"], "input": {"x": 1}}
    )
    assert r.status_code == 202, r.text
    run_id, position = r.json()["run_id"], r.json()["position"]
    await owner.client.until(
        run_id, lambda run: _has(run["approvals"], {"nodeId": "review", "status": "WAITING"})
    )
    r = await owner.rest.post(
        f"/v1/runs/{run_id}/patches",
        json={"patch": [{"op": "remove", "path": "/nodes/0"}], "reason": "tidy"},
    )
    assert r.status_code == 202, r.text
    r = await owner.rest.post(f"/v1/runs/{run_id}/forks", json={"at": "1"})
    assert r.status_code == 202, r.text
    fork_id = r.json()["run_id"]
    r = await owner.rest.put("/v1/secrets/SHARED_TOKEN", json={"value": f"owner-{unique}"})
    assert r.status_code in (200, 201, 204), r.text
    r = await owner.rest.get("/v1/keys")
    assert r.status_code == 200, r.text
    key_ids = [k["key_id"] for k in r.json()["keys"]]
    before = await owner.client.until(
        run_id, lambda run: _has(run["patches"], {"status": "REJECTED"}), after=position
    )
    await owner.client.until(fork_id, lambda run: None)
    return {
        "name": name,
        "workflow_id": published["workflow_id"],
        "version": published["version"],
        "run_id": run_id,
        "fork_id": fork_id,
        "key_ids": key_ids,
        "run": before,
    }


def _has(items: list[dict[str, Any]], wanted: dict[str, Any]) -> None:
    assert any(all(i.get(k) == v for k, v in wanted.items()) for i in items), items


async def test_another_tenant_reads_and_changes_nothing(
    services: Settings, owner: Tenant, intruder: Tenant, unique: str
) -> None:
    world = await _owners_world(owner, unique)
    wf, run_id, fork_id = world["workflow_id"], world["run_id"], world["fork_id"]
    uuid_spellings = [wf, wf.upper(), "{" + wf + "}", f"urn:uuid:{wf}", wf.replace("-", "")]

    # --- REST ------------------------------------------------------------------------------
    for spelling in uuid_spellings:  # a name shaped like a UUID is never taken as an id
        r = await intruder.rest.post(
            "/v1/workflows", json={"name": spelling, "definition": OTHER_DEFINITION}
        )
        assert r.status_code == 422, (spelling, r.text)
        r = await intruder.rest.post("/v1/runs", json={"workflow_id": spelling})
        assert r.status_code == 404, (spelling, r.text)
    r = await intruder.rest.post("/v1/runs", json={"workflow_id": wf, "version": world["version"]})
    assert r.status_code == 404, r.text
    # The same name is the intruder's own workflow, with an id of its own.
    r = await intruder.rest.post(
        "/v1/workflows", json={"name": world["name"], "definition": OTHER_DEFINITION}
    )
    assert r.status_code == 201, r.text
    assert r.json()["workflow_id"] != wf
    for target in (run_id, fork_id):
        calls = [
            ("post", f"/v1/runs/{target}/cancel", {"reason": "mine now"}),
            (
                "post",
                f"/v1/runs/{target}/patches",
                {"patch": [{"op": "remove", "path": "/nodes/0"}], "reason": "x"},
            ),
            ("post", f"/v1/runs/{target}/approvals/review", {"decision": "approve"}),
            ("post", f"/v1/runs/{target}/forks", {"at": "1"}),
        ]
        for method, path, body in calls:
            r = await intruder.rest.request(method, path, json=body)
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert target not in r.text or "not found" in r.text
    for key_id in world["key_ids"]:
        r = await intruder.rest.delete(f"/v1/keys/{key_id}")
        assert r.status_code == 404, r.text
    r = await intruder.rest.get("/v1/keys")
    assert not set(world["key_ids"]) & {k["key_id"] for k in r.json()["keys"]}
    r = await intruder.rest.get("/v1/secrets")
    assert r.status_code == 200, r.text
    assert "SHARED_TOKEN" not in json.dumps(r.json())
    r = await intruder.rest.delete("/v1/secrets/SHARED_TOKEN")
    assert r.status_code == 404, r.text

    # --- GraphQL: every root, and the nested fields through them ---------------------------
    for spelling in uuid_spellings:
        assert (await intruder.gql_data(WORKFLOW, id=spelling))["workflow"] is None
    for target in (run_id, fork_id):
        assert (await intruder.gql_data(RUN, id=target))["run"] is None
    mine = await intruder.gql_data(ALL_MINE, wf=wf)
    assert wf not in {e["node"]["id"] for e in mine["workflows"]["edges"]}
    assert mine["runs"]["edges"] == []
    assert {e["node"]["runId"] for e in mine["pendingApprovals"]["edges"]} & {
        run_id,
        fork_id,
    } == set()
    everything = await intruder.gql_data(ALL_MINE, wf=None)
    seen = json.dumps(everything)
    assert run_id not in seen and fork_id not in seen and wf not in seen

    # --- subscriptions ---------------------------------------------------------------------
    async with socket(services.query_api_url, init_key=intruder.key) as ws:
        for query in (RUN_UPDATED, RUN_EVENTS):
            got = await ws.until_complete(await ws.subscribe(query, {"id": run_id}))
            assert got[0]["payload"]["data"] is None, got
            assert got[0]["payload"]["errors"][0]["message"] == f"no run {run_id} for this key"

    # --- the CLI ---------------------------------------------------------------------------
    for args in (
        ("runs", "show", run_id),
        ("runs", "show", run_id, "--at", "1"),
        ("runs", "fork", run_id, "--at", "1"),
        ("events", "tail", "--run", run_id, "--lines", "5"),
        ("runs", "submit", wf),
    ):
        code, out = await asyncio.to_thread(_cli, intruder.key, *args)  # the CLI runs a loop
        assert code != 0, (args, out)
        assert "not found" in out, (args, out)
        assert "prepare" not in out and "review" not in out, (args, out)

    # --- and the owner's world is as it was -------------------------------------------------
    after = await owner.client.run(run_id)
    assert after["status"] == "WAITING"
    assert after["approvals"] == world["run"]["approvals"]
    assert after["patches"] == world["run"]["patches"]
    assert after["versions"] == world["run"]["versions"]
    assert [f["id"] for f in after["forks"]] == [fork_id]
    workflow = (await owner.gql_data(WORKFLOW, id=wf))["workflow"]
    assert workflow["latestVersion"] == world["version"]
    assert [v["version"] for v in workflow["versions"]] == [world["version"]]
    r = await owner.rest.get("/v1/secrets")
    assert "SHARED_TOKEN" in json.dumps(r.json())
    r = await owner.rest.get("/v1/keys")
    alive = {k["key_id"] for k in r.json()["keys"] if not k.get("revoked_at")}
    assert set(world["key_ids"]) <= alive

    # The owner's run still goes on when the owner decides.
    r = await owner.rest.post(f"/v1/runs/{run_id}/approvals/review", json={"decision": "approve"})
    assert r.status_code == 202, r.text
    await eventually(lambda: _completed(owner, run_id), timeout=60)


async def _completed(owner: Tenant, run_id: str) -> None:
    run = await owner.client.run(run_id)
    assert run["status"] == "COMPLETED", run["status"]
