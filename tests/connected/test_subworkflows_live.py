"""subworkflow nodes on the running system: a parent starts a child, which starts a
grandchild, and the grandchild's output comes back up to the top; cancelling the parent while
the grandchild waits for a person cancels all three; a workflow that calls itself is stopped
at the depth limit (``AOB_MAX_SUBWORKFLOW_DEPTH``), with the reason, and its runs all fail.
GraphQL links each run to its parent and children, and each subworkflow node to its child."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status output error depth parentNodeId
    parent { id }
    nodes { id status output error childRunId }
    children { id status }
  }
}
"""


def calls(workflow: str, into: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """A workflow whose one node ``call`` runs ``workflow`` with input ``into``."""
    config: dict[str, Any] = {"workflow": workflow, "input": into}
    if version is not None:
        config["version"] = version
    return {"nodes": [{"id": "call", "type": "subworkflow", "config": config}], "edges": []}


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


async def publish(client: RunClient, name: str, definition: dict[str, Any]) -> None:
    r = await client.rest.post("/v1/workflows", json={"name": name, "definition": definition})
    assert r.status_code == 201, r.text


def has_status(status: str) -> Callable[[dict[str, Any]], None]:
    def check(run: dict[str, Any]) -> None:
        assert run["status"] == status, run

    return check


def child_of(run: dict[str, Any]) -> str:
    (node,) = [n for n in run["nodes"] if n["id"] == "call"]
    assert node["childRunId"], run
    child: str = node["childRunId"]
    return child


async def test_a_grandchilds_output_comes_back_to_the_top(client: RunClient, unique: str) -> None:
    grandchild, child = f"gc-{unique[:8]}", f"c-{unique[:8]}"
    await publish(
        client,
        grandchild,
        {
            "nodes": [
                {
                    "id": "answer",
                    "type": "transform",
                    "config": {"output": {"greeting": "hello {{ input.who }}", "n": 42}},
                }
            ],
            "edges": [],
        },
    )
    await publish(client, child, calls(grandchild, {"who": "{{ input.name }}"}, "latest"))
    run_id, at = await client.submit(
        f"p-{unique[:8]}", calls(child, {"name": "{{ input.x }}"}), {"x": "ada"}
    )

    top = await client.until(run_id, has_status("COMPLETED"), at)
    expected = {"answer": {"greeting": "hello ada", "n": 42}}
    # Each level's output is its child's: the grandchild's output, nested once per level.
    assert top["output"] == {"call": {"call": expected}}, top
    assert top["depth"] == 0 and top["parent"] is None

    child_id = child_of(top)
    assert top["children"] == [{"id": child_id, "status": "COMPLETED"}]
    middle = await client.until(child_id, has_status("COMPLETED"))
    assert middle["output"] == {"call": expected}
    assert (middle["depth"], middle["parent"], middle["parentNodeId"]) == (
        1,
        {"id": run_id},
        "call",
    )
    bottom = await client.until(child_of(middle), has_status("COMPLETED"))
    assert bottom["output"] == expected
    assert bottom["depth"] == 2 and bottom["parent"] == {"id": child_id}
    assert bottom["children"] == []


async def test_cancelling_the_parent_cancels_its_child_and_grandchild(
    client: RunClient, unique: str
) -> None:
    grandchild, child = f"gcw-{unique[:8]}", f"cw-{unique[:8]}"
    await publish(
        client,
        grandchild,
        {"nodes": [{"id": "review", "type": "hitl", "config": {"prompt": "Go on?"}}], "edges": []},
    )
    await publish(client, child, calls(grandchild, {}))
    run_id, at = await client.submit(f"pw-{unique[:8]}", calls(child, {}))

    def waits_on_child(run: dict[str, Any]) -> None:
        assert run["status"] == "WAITING", run
        assert statuses(run)["call"] == "WAITING", run
        child_of(run)

    top = await client.until(run_id, waits_on_child, at)
    child_id = child_of(top)
    middle = await client.until(child_id, waits_on_child)
    grandchild_id = child_of(middle)

    def asks_a_person(run: dict[str, Any]) -> None:
        assert statuses(run)["review"] == "WAITING", run

    await client.until(grandchild_id, asks_a_person)

    r = await client.rest.post(f"/v1/runs/{run_id}/cancel", json={"reason": "not needed"})
    assert r.status_code == 202, r.text
    top = await client.until(run_id, has_status("CANCELLED"), r.json()["position"])
    assert top["error"] == "not needed"
    middle = await client.until(child_id, has_status("CANCELLED"))
    assert middle["error"] == f"its parent run {run_id} was cancelled"
    bottom = await client.until(grandchild_id, has_status("CANCELLED"))
    assert bottom["error"] == f"its parent run {child_id} was cancelled"
    assert statuses(bottom)["review"] == "SKIPPED"


async def test_a_workflow_that_calls_itself_stops_at_the_depth_limit(
    client: RunClient, unique: str, services: Settings
) -> None:
    name = f"self-{unique[:8]}"
    limit = services.max_subworkflow_depth
    run_id, at = await client.submit(name, calls(name, {}))
    top = await client.until(run_id, has_status("FAILED"), at, timeout=120)

    # Down the chain of children: every run failed, and the deepest node names the limit.
    runs = [top]
    while runs[-1]["children"]:
        (only,) = runs[-1]["children"]
        runs.append(await client.until(only["id"], has_status("FAILED")))
    assert [r["depth"] for r in runs] == list(range(limit + 1))
    deepest = {n["id"]: n for n in runs[-1]["nodes"]}["call"]
    assert deepest["status"] == "FAILED" and deepest["childRunId"] is None, runs[-1]
    assert f"at most {limit} deep (AOB_MAX_SUBWORKFLOW_DEPTH)" in deepest["error"], deepest
    assert f"subworkflow depth {limit + 1}" in deepest["error"], deepest
    # Each level above failed because its child did.
    for parent, child in itertools.pairwise(runs):
        call = {n["id"]: n for n in parent["nodes"]}["call"]
        assert call["error"].startswith(f"child run {child['id']} failed:"), call


async def test_publishing_refuses_a_call_of_a_workflow_the_tenant_lacks(
    client: RunClient, unique: str
) -> None:
    missing = f"nowhere-{unique[:8]}"
    r = await client.rest.post(
        "/v1/workflows", json={"name": f"caller-{unique[:8]}", "definition": calls(missing, {})}
    )
    assert r.status_code == 422, r.text
    assert f"node 'call' (subworkflow) calls workflow {missing!r}" in r.json()["detail"], r.text

    no_name = {"nodes": [{"id": "call", "type": "subworkflow", "config": {}}], "edges": []}
    r = await client.rest.post(
        "/v1/workflows", json={"name": f"bad-{unique[:8]}", "definition": no_name}
    )
    assert r.status_code == 422, r.text
    assert "node 'call' (subworkflow): config.workflow" in r.text, r.text
