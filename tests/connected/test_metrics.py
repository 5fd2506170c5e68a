"""Every AOB service exports Prometheus text, and ``aob status`` says where."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.settings import Settings
from infra.stack import Stack
from tests.connected.run_client import RunClient, http_clients

pytestmark = pytest.mark.connected

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "fan_out_fan_in.json").read_text()
)["definition"]
# A metric each service must export, with a value that a run makes grow.
GROWS = {
    "command_api": "aob_command_api_events_appended_total",
    "coordinator": "aob_coordinator_records_total",
    "projections": "aob_projections_events_applied_total",
    "workers": "aob_workers_tasks_total",
}


async def _samples(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url)
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def test_each_service_counts_what_a_run_does(services: Settings, api_key: str) -> None:
    status = await Stack(services).status()
    urls = {c["name"]: c["metrics_url"] for c in status["components"] if c.get("metrics_url")}
    assert set(GROWS) <= set(urls), urls
    before = {name: (await _samples(urls[name])).get(metric, 0.0) for name, metric in GROWS.items()}

    async with http_clients(services, api_key) as (rest, gql):
        runs = RunClient(
            rest, gql, "query($id: ID!, $after: String) { run(id: $id, after: $after) { status } }"
        )
        run_id, position = await runs.submit("metrics-example", EXAMPLE, {"n": 1})

        def completed(run: dict[str, object]) -> None:
            assert run["status"] == "COMPLETED", run

        await runs.until(run_id, completed, after=position)

    for name, metric in GROWS.items():
        after = (await _samples(urls[name])).get(metric, 0.0)
        assert after > before[name], f"{name}: {metric} stayed at {after}"
