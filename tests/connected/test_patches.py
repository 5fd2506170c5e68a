"""Patching live runs through REST, on the running system: a person's patch inserts a node
and the run executes it; patches that break a rule are refused with their reasons while the
run goes on unchanged; patches sent at the same moment are each judged, none lost. Watched
through GraphQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    status version workflowId
    nodes { id status output startedAt }
    patches { id status reason ops fromVersion toVersion rejectedReasons }
    versions { seq version patchId }
  }
}
"""

WORKFLOW = """
query Workflow($id: ID!) { workflow(id: $id) { versions { version definition } } }
"""

# start -> gate -(approved)-> b -> c. The gate holds the run while a patch is judged.
GATED: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"n": 2}}},
        {"id": "gate", "type": "hitl", "config": {"prompt": "Go on?"}},
        {"id": "b", "type": "transform", "config": {"output": {"step": "b"}}},
        {"id": "c", "type": "transform", "config": {"output": {"after": "c"}}},
    ],
    "edges": [
        {"from": "start", "to": "gate"},
        {"from": "gate", "to": "b", "when": "approved"},
        {"from": "b", "to": "c"},
    ],
}


class Client(RunClient):
    async def patch(
        self, run_id: str, ops: list[Any], reason: str, base_version: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"patch": ops, "reason": reason}
        if base_version is not None:
            body["base_version"] = base_version
        r = await self.rest.post(f"/v1/runs/{run_id}/patches", json=body)
        assert r.status_code == 202, r.text
        answer: dict[str, Any] = r.json()
        assert answer["patch_id"] == answer["event_id"]
        return answer

    async def approve(self, run_id: str) -> str:
        r = await self.rest.post(f"/v1/runs/{run_id}/approvals/gate", json={"decision": "approve"})
        assert r.status_code == 202, r.text
        position: str = r.json()["position"]
        return position

    async def gated(self, unique: str) -> tuple[str, dict[str, Any]]:
        """A run of GATED, waiting at its gate."""
        run_id, submitted = await self.submit(f"gated-{unique[:8]}", GATED)

        def waiting(run: dict[str, Any]) -> None:
            assert statuses(run)["gate"] == "WAITING", run

        return run_id, await self.until(run_id, waiting, submitted)

    async def verdicts(self, run_id: str, count: int) -> dict[str, Any]:
        def judged(run: dict[str, Any]) -> None:
            assert len(run["patches"]) == count, run["patches"]
            assert all(p["status"] in ("APPLIED", "REJECTED") for p in run["patches"]), run

        return await self.until(run_id, judged)


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[Client]:
    async with http_clients(services, api_key) as (rest, gql):
        yield Client(rest, gql, RUN)


def add_node(node: dict[str, Any]) -> dict[str, Any]:
    return {"op": "add", "path": "/nodes/-", "value": node}


def add_edge(source: str, target: str) -> dict[str, Any]:
    return {"op": "add", "path": "/edges/-", "value": {"from": source, "to": target}}


def completed(run: dict[str, Any]) -> None:
    assert run["status"] == "COMPLETED", run


async def test_a_persons_patch_inserts_a_node_between_two_pending_nodes_and_it_runs(
    client: Client, unique: str
) -> None:
    run_id, run = await client.gated(unique)
    v0 = run["version"]
    x = {"id": "x", "type": "transform", "config": {"output": {"saw": "{{ nodes.b.output.step }}"}}}
    ops = [
        {"op": "remove", "path": "/edges/2"},  # b -> c
        add_node(x),
        add_edge("b", "x"),
        add_edge("x", "c"),
    ]
    answer = await client.patch(run_id, ops, "check b's work before c", base_version=v0)
    run = await client.verdicts(run_id, 1)
    (patch,) = run["patches"]
    assert patch["status"] == "APPLIED", patch
    assert (patch["id"], patch["reason"], patch["ops"]) == (
        answer["patch_id"],
        "check b's work before c",
        ops,
    )
    assert patch["fromVersion"] == v0 and patch["toVersion"] != v0
    assert patch["rejectedReasons"] in ([], None)
    assert run["version"] == patch["toVersion"]
    assert [(v["seq"], v["version"], v["patchId"]) for v in run["versions"]] == [
        (0, v0, None),
        (1, patch["toVersion"], patch["id"]),
    ]
    assert statuses(run)["x"] == "PENDING"

    run = await client.until(run_id, completed, await client.approve(run_id))
    nodes = {n["id"]: n for n in run["nodes"]}
    assert {i: n["status"] for i, n in nodes.items()} == dict.fromkeys(
        ["start", "gate", "b", "x", "c"], "SUCCEEDED"
    )
    assert nodes["x"]["output"] == {"saw": "b"}
    assert nodes["b"]["startedAt"] <= nodes["x"]["startedAt"] <= nodes["c"]["startedAt"]

    # The patch changed this run only: not the workflow's published versions, nor a run of
    # it submitted afterwards.
    r = await client.rest.post("/v1/runs", json={"workflow_id": f"gated-{unique[:8]}"})
    assert r.status_code == 202, r.text
    other = await client.until(r.json()["run_id"], lambda o: None, r.json()["position"])
    assert other["version"] == v0
    assert set(statuses(other)) == {"start", "gate", "b", "c"}
    assert other["patches"] == []
    workflow = (await client.query(WORKFLOW, {"id": run["workflowId"]}))["workflow"]
    assert [v["version"] for v in workflow["versions"]] == [v0]
    assert [e["from"] + ">" + e["to"] for e in workflow["versions"][0]["definition"]["edges"]] == [
        "start>gate",
        "gate>b",
        "b>c",
    ]


async def test_patches_that_break_a_rule_are_refused_with_reasons_and_the_run_goes_on(
    client: Client, unique: str
) -> None:
    run_id, before = await client.gated(unique)
    cycle = [add_edge("c", "b")]
    finished = [{"op": "replace", "path": "/nodes/0/config", "value": {"output": {"n": 3}}}]
    too_many = [{"op": "test", "path": "/nodes/0/id", "value": "start"}] * 1_001
    # Past the operations a patch may have, the command API refuses it at the door (422);
    # the coordinator's own limit judges what agents propose.
    r = await client.rest.post(
        f"/v1/runs/{run_id}/patches", json={"patch": too_many, "reason": "big"}
    )
    assert r.status_code == 422 and "at most 1000" in r.json()["detail"], r.text
    for ops, reason in ((cycle, "loop"), (finished, "rewrite history")):
        await client.patch(run_id, ops, reason)
    run = await client.verdicts(run_id, 2)
    reasons = {p["reason"]: p["rejectedReasons"] for p in run["patches"]}
    assert {p["status"] for p in run["patches"]} == {"REJECTED"}
    assert reasons == {
        "loop": ["the graph has a cycle: b -> c -> b"],
        "rewrite history": [
            "node 'start' cannot be changed: it has finished (SUCCEEDED); only nodes not yet "
            "scheduled can change"
        ],
    }
    assert run["version"] == before["version"]
    assert [v["seq"] for v in run["versions"]] == [0]
    assert statuses(run) == statuses(before)

    run = await client.until(run_id, completed, await client.approve(run_id))
    assert statuses(run) == dict.fromkeys(["start", "gate", "b", "c"], "SUCCEEDED")
    # A finished run takes no patch either, and says so.
    await client.patch(run_id, [add_node({"id": "late", "type": "noop"})], "too late")
    run = await client.verdicts(run_id, 3)
    assert run["patches"][-1]["rejectedReasons"] == [
        "the run is COMPLETED: it takes no more patches"
    ]


async def test_patches_sent_at_the_same_moment_are_each_judged_against_the_right_version(
    client: Client, unique: str
) -> None:
    run_id, run = await client.gated(unique)
    v0 = run["version"]
    # Both written against v0: the first judged applies, the other is refused as stale.
    await asyncio.gather(
        client.patch(run_id, [add_node({"id": "p", "type": "noop"}), add_edge("b", "p")], "p", v0),
        client.patch(run_id, [add_node({"id": "q", "type": "noop"}), add_edge("b", "q")], "q", v0),
    )
    run = await client.verdicts(run_id, 2)
    first, second = run["patches"]
    assert (first["status"], second["status"]) == ("APPLIED", "REJECTED"), run["patches"]
    assert first["fromVersion"] == v0
    v1 = first["toVersion"]
    assert second["rejectedReasons"] == [
        f"the patch was written against version {v0}, but the run is at version {v1} now "
        "(another patch was applied since): write it again against the current definition"
    ]
    # Without a base version, each is judged against the version the one before made.
    await asyncio.gather(
        client.patch(run_id, [add_node({"id": "r", "type": "noop"}), add_edge("c", "r")], "r"),
        client.patch(run_id, [add_node({"id": "s", "type": "noop"}), add_edge("c", "s")], "s"),
    )
    run = await client.verdicts(run_id, 4)
    third, fourth = run["patches"][2:]
    assert (third["status"], fourth["status"]) == ("APPLIED", "APPLIED"), run["patches"]
    assert third["fromVersion"] == v1
    assert fourth["fromVersion"] == third["toVersion"]
    assert run["version"] == fourth["toVersion"]
    assert [v["version"] for v in run["versions"]] == [v0, v1, third["toVersion"], run["version"]]

    run = await client.until(run_id, completed, await client.approve(run_id))
    added = {first["reason"], third["reason"], fourth["reason"]}
    assert {n: s for n, s in statuses(run).items() if n in {"p", "q", "r", "s"}} == dict.fromkeys(
        added, "SUCCEEDED"
    )
