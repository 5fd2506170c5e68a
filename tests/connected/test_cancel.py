"""Cancel through the REST API, on the running system: the run waits on an approval, the
cancel arrives, and the read side shows the run CANCELLED with every unfinished node skipped
and nothing downstream run."""

from __future__ import annotations

from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses

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
    async with http_clients(services, api_key) as (rest, gql):
        client = RunClient(rest, gql, QUERY)
        run_id, submitted_at = await client.submit(
            WAITS_FOR_A_PERSON["name"], WAITS_FOR_A_PERSON["definition"]
        )

        def review_reached(run: dict[str, Any]) -> None:
            nodes = statuses(run)
            assert nodes["prepare"] == "SUCCEEDED", run
            assert nodes["review"] in ("SCHEDULED", "RUNNING", "WAITING"), run

        await client.until(run_id, review_reached, submitted_at)
        cancel = await rest.post(f"/v1/runs/{run_id}/cancel", json={"reason": "out of date"})
        assert cancel.status_code == 202, cancel.text

        def cancelled(run: dict[str, Any]) -> None:
            assert run["status"] == "CANCELLED", run

        run = await client.until(run_id, cancelled, cancel.json()["position"])
    assert run["error"] == "out of date"
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["prepare"]["status"] == "SUCCEEDED"
    assert nodes["review"]["status"] == "SKIPPED"
    assert nodes["ship"]["status"] == "SKIPPED"
    assert nodes["ship"]["attempts"] == 0  # never scheduled
