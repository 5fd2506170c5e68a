"""Cancel through the REST API, on the running system: the run waits on an approval, the
cancel arrives, and the read side shows the run CANCELLED with every unfinished node skipped
and nothing downstream run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.helpers import eventually

pytestmark = pytest.mark.connected

QUERY = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) { status error nodes { id status attempts } }
}
"""

WAITS_FOR_A_PERSON = {
    "name": "waits-for-a-person",
    "definition": {
        "nodes": [
            {"id": "prepare", "type": "noop"},
            {"id": "review", "type": "hitl", "config": {"prompt": "Ship it?"}},
            {"id": "ship", "type": "noop"},
        ],
        "edges": [
            {"from": "prepare", "to": "review"},
            {"from": "review", "to": "ship", "when": "approved"},
        ],
    },
}


async def test_cancel_stops_a_waiting_run_and_nothing_after_it_runs(
    services: Settings, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=60) as gql,
    ):
        assert (await rest.post("/v1/workflows", json=WAITS_FOR_A_PERSON)).status_code == 201
        r = await rest.post("/v1/runs", json={"workflow_id": "waits-for-a-person"})
        assert r.status_code == 202, r.text
        run_id, submitted_at = r.json()["run_id"], r.json()["position"]

        async def run_now(after: str | None = None) -> dict[str, Any]:
            body = {"query": QUERY, "variables": {"id": run_id, "after": after}}
            data = (await gql.post("/graphql", json=body)).json()
            assert not data.get("errors"), data
            run: dict[str, Any] | None = data["data"]["run"]
            assert run is not None
            return run

        async def review_reached() -> None:
            run = await run_now(submitted_at)
            nodes = {n["id"]: n["status"] for n in run["nodes"]}
            assert nodes["prepare"] == "SUCCEEDED", run
            assert nodes["review"] in ("SCHEDULED", "RUNNING", "WAITING"), run

        await eventually(review_reached, timeout=60)
        cancel = await rest.post(f"/v1/runs/{run_id}/cancel", json={"reason": "out of date"})
        assert cancel.status_code == 202, cancel.text

        async def cancelled() -> dict[str, Any]:
            run = await run_now(cancel.json()["position"])
            assert run["status"] == "CANCELLED", run
            return run

        run = await eventually(cancelled, timeout=60)
    assert run["error"] == "out of date"
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["prepare"]["status"] == "SUCCEEDED"
    assert nodes["review"]["status"] == "SKIPPED"
    assert nodes["ship"]["status"] == "SKIPPED"
    assert nodes["ship"]["attempts"] == 0  # never scheduled
