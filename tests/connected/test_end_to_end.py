"""One run end to end through every part, through the real HTTP endpoints of running services:
REST -> Kafka -> coordinator -> workers -> MinIO -> projections -> Postgres -> GraphQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cas import ContentStore
from infra.settings import Settings
from tests.helpers import eventually

pytestmark = pytest.mark.connected

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

RUN_QUERY = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status workflowId version input output
    nodes { id type status attempts output outputRef error }
    events(first: 200) { edges { node { type payload } } }
  }
}
"""


async def graphql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def expected_outputs(items: list[int], name: str) -> dict[str, Any]:
    return {
        "start": {"name": name, "numbers": items},
        "shout": {"text": name.upper()},
        "count": {"n": len(items)},
        "total": {"sum": sum(items)},
        "report": {"summary": f"HELLO {name.upper()}: {len(items)} items, sum {sum(items)}"},
        "done": {},
    }


async def test_twenty_fan_out_fan_in_runs_complete_with_correct_outputs(
    services: Settings, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    example = json.loads((EXAMPLES / "fan_out_fan_in.json").read_text())
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        published = await rest.post("/v1/workflows", json=example)
        assert published.status_code == 201, published.text
        workflow_id = published.json()["workflow_id"]

        runs: dict[str, tuple[list[int], str]] = {}
        positions: dict[str, str] = {}
        for i in range(20):
            items = list(range(i + 1))
            name = f"run{i}"
            submitted = await rest.post(
                "/v1/runs",
                json={"workflow_id": workflow_id, "input": {"name": name, "numbers": items}},
            )
            assert submitted.status_code == 202, submitted.text
            body = submitted.json()
            runs[body["run_id"]] = (items, name)
            positions[body["run_id"]] = body["position"]

        # Read-your-writes: with `after`, the answer already includes the submitted run.
        first = next(iter(runs))
        data = await graphql(gql, RUN_QUERY, id=first, after=positions[first])
        assert data["run"] is not None and data["run"]["id"] == first
        assert data["run"]["workflowId"] == workflow_id

        async def all_completed() -> dict[str, Any]:
            results = {}
            for run_id in runs:
                run = (await graphql(gql, RUN_QUERY, id=run_id))["run"]
                assert run is not None and run["status"] == "COMPLETED", (
                    run_id,
                    run and run["status"],
                )
                results[run_id] = run
            return results

        results = await eventually(all_completed, timeout=120, interval=0.5)

    for run_id, run in results.items():
        items, name = runs[run_id]
        expected = expected_outputs(items, name)
        assert {n["id"] for n in run["nodes"]} == set(expected)
        successes: dict[str, int] = {}
        for edge in run["events"]["edges"]:
            if edge["node"]["type"] == "run.node_succeeded":
                node_id = edge["node"]["payload"]["node_id"]
                successes[node_id] = successes.get(node_id, 0) + 1
        assert successes == dict.fromkeys(expected, 1), (run_id, successes)
        for node in run["nodes"]:
            assert node["status"] == "SUCCEEDED", node
            assert node["attempts"] == 1, node
            assert node["output"] == expected[node["id"]], node
            # Small outputs travel in their events only: no CAS reference, no blob.
            assert node["outputRef"] is None, node
        assert run["output"] == {"done": {}}


async def test_a_large_output_is_kept_in_the_cas_and_read_through_its_reference(
    services: Settings, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    workflow = {
        "name": "large-output",
        "definition": {
            "nodes": [
                {
                    "id": "big",
                    "type": "transform",
                    "config": {"output": {"rows": "{{ range(input.n) | list }}"}},
                },
                {
                    "id": "count",
                    "type": "transform",
                    "config": {"output": {"n": "{{ nodes.big.output.rows | length }}"}},
                },
            ],
            "edges": [{"from": "big", "to": "count"}],
        },
    }
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        assert (await rest.post("/v1/workflows", json=workflow)).status_code == 201
        r = await rest.post("/v1/runs", json={"workflow_id": "large-output", "input": {"n": 5000}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]

        async def completed() -> dict[str, Any]:
            run = (await graphql(gql, RUN_QUERY, id=run_id))["run"]
            assert run is not None and run["status"] == "COMPLETED", run and run["status"]
            return {n["id"]: n for n in run["nodes"]}

        nodes = await eventually(completed, timeout=60)
    rows = list(range(5000))
    # Over the inline limit: the event carries the reference, and GraphQL reads the blob.
    assert nodes["big"]["outputRef"].startswith("cas://sha256:")
    assert nodes["big"]["output"] == {"rows": rows}
    store = ContentStore.from_settings(services)
    assert await store.get_json(nodes["big"]["outputRef"]) == {"rows": rows}
    # The downstream node was given the whole output, read from the CAS by its worker.
    assert nodes["count"]["output"] == {"n": 5000} and nodes["count"]["outputRef"] is None


async def test_a_branch_not_taken_is_skipped_and_the_join_still_runs(
    services: Settings, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    example = json.loads((EXAMPLES / "branching.json").read_text())
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        assert (await rest.post("/v1/workflows", json=example)).status_code == 201
        run_ids = {}
        for items in ([1], [1, 2, 3, 4, 5]):
            r = await rest.post(
                "/v1/runs", json={"workflow_id": "branching", "input": {"numbers": items}}
            )
            assert r.status_code == 202, r.text
            run_ids[len(items)] = r.json()["run_id"]

        async def statuses(run_id: str) -> dict[str, str]:
            run = (await graphql(gql, RUN_QUERY, id=run_id))["run"]
            assert run is not None and run["status"] == "COMPLETED", run and run["status"]
            return {n["id"]: n["status"] for n in run["nodes"]}

        small = await eventually(lambda: statuses(run_ids[1]), timeout=60)
        big = await eventually(lambda: statuses(run_ids[5]), timeout=60)
    assert small["pass_through"] == "SUCCEEDED" and small["summarise"] == "SKIPPED"
    assert big["summarise"] == "SUCCEEDED" and big["pass_through"] == "SKIPPED"
    assert small["done"] == big["done"] == "SUCCEEDED"


async def test_graphql_refuses_a_missing_key_and_hides_other_tenants_runs(
    services: Settings, api_key: str, other_tenant_key: str
) -> None:
    async with httpx.AsyncClient(base_url=services.command_api_url, timeout=30) as rest:
        rest.headers["Authorization"] = f"Bearer {api_key}"
        example = json.loads((EXAMPLES / "fan_out_fan_in.json").read_text())
        assert (await rest.post("/v1/workflows", json=example)).status_code == 201
        r = await rest.post("/v1/runs", json={"workflow_id": "fan-out-fan-in"})
        run_id, position = r.json()["run_id"], r.json()["position"]
    async with httpx.AsyncClient(base_url=services.query_api_url, timeout=30) as gql:
        anonymous = await gql.post("/graphql", json={"query": "{ runs { edges { cursor } } }"})
        assert anonymous.status_code == 401
        gql.headers["Authorization"] = f"Bearer {other_tenant_key}"
        data = await graphql(gql, RUN_QUERY, id=run_id, after=position)
        assert data["run"] is None
