"""History on the running system: ``aob runs show --at`` folds the log through the
coordinator's evolve, and at every position of a recorded run it agrees with the read
model's own history of that run (``Run.events`` with the run's and the node's status after
each event); ``aob events tail`` prints the log as readable lines, and follows it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner

from cli import CLIError
from cli.main import app
from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    status version
    nodes { id type status attempts output outputRef }
    patches { status }
    events(first: 500) {
      edges { node { id seq position type runStatus nodeId nodeStatus } }
    }
  }
}
"""

# start -> gate (condition) -true-> review (hitl) -approved-> ship -> done
#                           -false-> skipped_path -> done;  review -rejected-> revise -> done
WORKFLOW: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"n": "{{ input.n }}"}}},
        {"id": "gate", "type": "condition", "config": {"expr": "input.n > 1"}},
        {"id": "review", "type": "hitl", "config": {"prompt": "Ship {{ input.n }}?"}},
        {"id": "skipped_path", "type": "noop"},
        {"id": "ship", "type": "transform", "config": {"output": {"shipped": True}}},
        {"id": "revise", "type": "noop"},
        {"id": "done", "type": "noop"},
    ],
    "edges": [
        {"from": "start", "to": "gate"},
        {"from": "gate", "to": "review", "when": "true"},
        {"from": "gate", "to": "skipped_path", "when": "false"},
        {"from": "skipped_path", "to": "done"},
        {"from": "review", "to": "ship", "when": "approved"},
        {"from": "review", "to": "revise", "when": "rejected"},
        {"from": "ship", "to": "done"},
        {"from": "revise", "to": "done"},
    ],
}


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


def _cli(api_key: str, *args: str) -> tuple[int, str]:
    """``aob <args>`` in this process, as a user at a terminal would run it."""
    result = CliRunner().invoke(app, list(args), env={"AOB_API_KEY": api_key})
    if isinstance(result.exception, CLIError):  # `aob` prints it as one line and exits 1
        return 1, str(result.exception)
    return result.exit_code, result.output


async def _recorded_run(client: RunClient, unique: str) -> tuple[str, dict[str, Any]]:
    """A finished run that went through a condition, a skip, a wait, a patch and a decision."""
    run_id, position = await client.submit(f"history-{unique}", WORKFLOW, {"n": 3})
    await client.until(run_id, lambda r: _is(r, "WAITING"), after=position)
    patch = [
        {"op": "add", "path": "/nodes/-", "value": {"id": "audit", "type": "noop"}},
        {"op": "add", "path": "/edges/-", "value": {"from": "ship", "to": "audit"}},
        {"op": "add", "path": "/edges/-", "value": {"from": "audit", "to": "done"}},
    ]
    r = await client.rest.post(
        f"/v1/runs/{run_id}/patches", json={"patch": patch, "reason": "audit what ships"}
    )
    assert r.status_code == 202, r.text
    await client.until(run_id, _patched, after=r.json()["position"])
    r = await client.rest.post(f"/v1/runs/{run_id}/approvals/review", json={"decision": "approve"})
    assert r.status_code == 202, r.text
    run = await client.until(run_id, lambda r: _is(r, "COMPLETED"), after=r.json()["position"])
    # The read model has the whole history once it holds the run's last event.
    run = await client.until(
        run_id, lambda r: _last_is(r, "run.completed"), after=r.json()["position"]
    )
    return run_id, run


def _is(run: dict[str, Any], status: str) -> None:
    assert run["status"] == status, run["status"]


def _patched(run: dict[str, Any]) -> None:
    assert [p["status"] for p in run["patches"]] == ["APPLIED"], run["patches"]


def _last_is(run: dict[str, Any], kind: str) -> None:
    assert run["events"]["edges"][-1]["node"]["type"] == kind


async def test_runs_show_at_every_position_matches_the_read_models_history(
    client: RunClient, api_key: str, other_tenant_key: str, unique: str
) -> None:
    run_id, run = await _recorded_run(client, unique)
    history = [e["node"] for e in run["events"]["edges"]]
    # Submitted, started, a patch, an approval, every node scheduled and finished (a quick
    # attempt tells its start with its outcome: no run.node_started of its own).
    assert len(history) >= 20, [e["type"] for e in history]
    kinds = {e["type"] for e in history}
    assert {"run.node_skipped", "run.patch_applied", "run.approval_decided"} <= kinds

    for k, event in enumerate(history, start=1):
        code, out = await asyncio.to_thread(_cli, api_key, "runs", "show", run_id, "--at", str(k))
        assert code == 0, out
        code, out = await asyncio.to_thread(
            _cli, api_key, "runs", "show", run_id, "--at", str(k), "--json"
        )
        assert code == 0, out
        view = json.loads(out)
        where = f"at seq {k} ({event['type']})"
        assert view["at"]["seq"] == k and view["at"]["position"] == event["position"], where
        assert [e["event_id"] for e in view["events"]] == [e["id"] for e in history[:k]], where
        assert view["status"] == event["runStatus"], where
        if event["nodeId"] is not None and event["nodeStatus"] is not None:
            assert view["nodes"][event["nodeId"]]["status"] == event["nodeStatus"], where
        # The same point named by its log position gives the same view.
        code, out = await asyncio.to_thread(
            _cli, api_key, "runs", "show", run_id, "--at", event["position"], "--json"
        )
        assert code == 0, out
        assert json.loads(out) == view, where

    # At the end, the fold and the read model's rows agree node by node.
    last = view
    assert last["status"] == run["status"] == "COMPLETED"
    assert last["version"] == run["version"]
    folded = {
        n: (v["type"], v["status"], v["attempt"], v["output"], v["output_ref"])
        for n, v in last["nodes"].items()
    }
    projected = {
        n["id"]: (n["type"], n["status"], n["attempts"], n["output"], n["outputRef"])
        for n in run["nodes"]
    }
    assert folded == projected
    assert last["nodes"]["skipped_path"]["status"] == "SKIPPED"
    assert last["nodes"]["audit"]["status"] == "SUCCEEDED"

    # Points that are not in the run's history, and runs that are not the caller's.
    for bad in ("0", str(len(history) + 1), "aob.runs.events:999:0", "soon"):
        code, out = await asyncio.to_thread(_cli, api_key, "runs", "show", run_id, "--at", bad)
        assert code == 1 and "the run has" in out, (bad, out)
    code, out = await asyncio.to_thread(_cli, other_tenant_key, "runs", "show", run_id, "--at", "1")
    assert code == 1 and "not found" in out, out


async def test_events_tail_prints_a_runs_events_as_lines(
    client: RunClient, api_key: str, unique: str
) -> None:
    run_id, run = await _recorded_run(client, unique)
    history = [e["node"] for e in run["events"]["edges"]]
    code, out = await asyncio.to_thread(
        _cli, api_key, "events", "tail", "--run", run_id, "--lines", "1000"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert [ln.split()[3] for ln in lines] == [e["type"] for e in history], out
    assert all(run_id in ln for ln in lines)
    assert [ln.split()[2] for ln in lines] == [e["position"] for e in history]
    code, out = await asyncio.to_thread(
        _cli, api_key, "events", "tail", "--run", run_id, "--lines", "3"
    )
    assert [ln.split()[3] for ln in out.splitlines()] == [e["type"] for e in history[-3:]]


async def test_events_tail_follow_prints_events_as_they_are_appended(
    client: RunClient, services: Settings, unique: str
) -> None:
    aob = Path(sys.executable).with_name("aob")
    tail = await asyncio.create_subprocess_exec(
        str(aob),
        "events",
        "tail",
        "--follow",
        "--lines",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert tail.stdout is not None and tail.stderr is not None
    try:
        # It says so once it has the log's end: anything appended from then on is shown.
        ready = await asyncio.wait_for(tail.stderr.readline(), 30)
        assert b"following" in ready, ready
        one_node = {"nodes": [{"id": "a", "type": "noop"}]}
        run_id, _ = await client.submit(f"follow-{unique}", one_node)
        seen: list[str] = []

        async def until_completed() -> None:
            while True:
                raw = await tail.stdout.readline()  # type: ignore[union-attr]
                assert raw, "aob events tail --follow ended"
                parts = raw.decode().split()
                if run_id in parts:
                    seen.append(parts[3])
                    if parts[3] == "run.completed":
                        return

        await asyncio.wait_for(until_completed(), 60)
        assert seen[0] == "run.submitted" and seen[-1] == "run.completed", seen
        assert "run.node_succeeded" in seen
    finally:
        tail.terminate()
        await tail.wait()


async def test_the_log_reads_without_aobs_code(
    client: RunClient, services: Settings, unique: str
) -> None:
    """What Redpanda Console shows: the run id as key, the type and schema version as headers,
    and the envelope as plain JSON — read here with a bare Kafka consumer and ``json``."""
    run_id, run = await _recorded_run(client, unique)
    first, last = (run["events"]["edges"][i]["node"]["position"] for i in (0, -1))
    topic, partition, start = first.rsplit(":", 2)
    end = int(last.rsplit(":", 1)[1])
    consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, int(partition))
        consumer.assign([tp])
        consumer.seek(tp, int(start))
        records = []
        while not records or records[-1].offset < end:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            records += [r for r in batches.get(tp, []) if r.offset <= end]
    finally:
        await consumer.stop()
    ours = [r for r in records if r.key == run_id.encode()]
    assert len(ours) >= len(run["events"]["edges"])
    for r in ours:
        value = json.loads(r.value)
        headers = dict(r.headers)
        assert value["aggregate_id"] == run_id
        assert headers["aob-type"].decode() == value["type"]
        assert headers["aob-schema-version"].decode() == str(value["schema_version"])
        assert headers["aob-event-id"].decode() == value["event_id"]
        assert {"occurred_at", "actor", "payload", "correlation_id"} <= value.keys()
