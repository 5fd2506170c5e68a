"""A node that fails for good fails the run, with the reason on the run and on the node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.helpers import eventually

pytestmark = pytest.mark.connected

QUERY = """
query Run($id: ID!) {
  run(id: $id) { status error nodes { id status error attempts } }
}
"""

BROKEN = {
    "name": "broken-template",
    "definition": {
        "nodes": [
            {"id": "first", "type": "noop"},
            {
                "id": "bad",
                "type": "transform",
                "config": {"output": {"x": "{{ input.missing.deeper }}"}},
            },
            {"id": "after", "type": "noop"},
        ],
        "edges": [{"from": "first", "to": "bad"}, {"from": "bad", "to": "after"}],
    },
}


async def test_a_failing_node_fails_the_run_with_its_reason(
    services: Settings, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        assert (await rest.post("/v1/workflows", json=BROKEN)).status_code == 201
        r = await rest.post("/v1/runs", json={"workflow_id": "broken-template", "input": {}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]

        async def failed() -> dict[str, Any]:
            response = await gql.post(
                "/graphql", json={"query": QUERY, "variables": {"id": run_id}}
            )
            run = response.json()["data"]["run"]
            assert run is not None and run["status"] == "FAILED", run
            return run

        run = await eventually(failed, timeout=60)
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["first"]["status"] == "SUCCEEDED"
    assert nodes["bad"]["status"] == "FAILED"
    assert "bad" in run["error"] and "missing" in run["error"]
    assert "missing" in nodes["bad"]["error"]
    # Nothing downstream of a failure runs.
    assert nodes["after"]["status"] == "PENDING"
