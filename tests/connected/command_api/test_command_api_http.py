"""The command API through real HTTP, against the real Kafka, PostgreSQL and MinIO."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from cas import ContentStore
from infra.settings import Settings
from schemas import Event, RunSubmitted, WorkflowIR, WorkflowPublished, decode_event
from schemas.position import Position
from tests.connected.command_api.conftest import new_key

pytestmark = pytest.mark.connected

DEFINITION: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"x": "{{ input.x }}"}}},
        {"id": "done", "type": "noop"},
    ],
    "edges": [{"from": "start", "to": "done"}],
}


async def read_at(settings: Settings, token: str) -> Event:
    """The event stored at a position token, read straight from Kafka."""
    pos = Position.parse(token)
    tp = TopicPartition(pos.topic, pos.partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, pos.offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout=20)
        return decode_event(record.value)
    finally:
        await consumer.stop()


async def end_offset(settings: Settings, topic: str, partition: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


def is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


async def publish(client: httpx.AsyncClient, name: str, definition: Any = None) -> httpx.Response:
    return await client.post(
        "/v1/workflows", json={"name": name, "definition": definition or DEFINITION}
    )


async def test_publish_is_201_and_an_identical_definition_keeps_its_version(
    stack: Settings, client: httpx.AsyncClient, fresh_name: str
) -> None:
    r = await publish(client, fresh_name)
    assert r.status_code == 201, r.text
    first = r.json()
    assert set(first) == {"workflow_id", "version", "event_id", "position"}
    event = await read_at(stack, first["position"])
    assert isinstance(event, WorkflowPublished) and event.event_id == first["event_id"]
    assert event.aggregate_id == first["workflow_id"]
    assert event.payload.name == fresh_name and event.payload.version == first["version"]
    assert event.actor.kind == "user"
    store = ContentStore.from_settings(stack)
    assert await store.get_json(event.payload.definition_ref) == event.payload.definition
    ir = WorkflowIR.model_validate(await store.get_json(event.payload.ir_ref))
    assert ir.version == first["version"] and ir.roots == ["start"]

    # Same definition, other key order: same version, the first event, nothing appended.
    pos = Position.parse(first["position"])
    before = await end_offset(stack, pos.topic, pos.partition)
    again = await publish(client, fresh_name, json.loads(json.dumps(DEFINITION, sort_keys=True)))
    assert again.status_code == 201 and again.json() == first
    assert await end_offset(stack, pos.topic, pos.partition) == before

    # A new definition is a new version, and the old one published again is the latest once more.
    changed = {**DEFINITION, "nodes": [*DEFINITION["nodes"], {"id": "extra", "type": "noop"}]}
    second = (await publish(client, fresh_name, changed)).json()
    assert second["version"] != first["version"] and second["workflow_id"] == first["workflow_id"]
    back = (await publish(client, fresh_name)).json()
    assert back["version"] == first["version"] and back["event_id"] != first["event_id"]
    run = await client.post("/v1/runs", json={"workflow_id": fresh_name})
    submitted = await read_at(stack, run.json()["position"])
    assert isinstance(submitted, RunSubmitted) and submitted.payload.version == first["version"]


async def test_submit_is_202_and_run_submitted_is_in_the_log_at_that_position(
    stack: Settings, client: httpx.AsyncClient, fresh_name: str
) -> None:
    published = (await publish(client, fresh_name)).json()
    for ref in (fresh_name, published["workflow_id"]):  # by name or by id
        r = await client.post("/v1/runs", json={"workflow_id": ref, "input": {"x": 7}})
        assert r.status_code == 202, r.text
        answer = r.json()
        event = await read_at(stack, answer["position"])
        assert isinstance(event, RunSubmitted)
        assert event.event_id == answer["event_id"]
        assert event.aggregate_id == event.correlation_id == answer["run_id"]
        assert event.payload.workflow_id == published["workflow_id"]
        assert event.payload.workflow_name == fresh_name
        assert event.payload.version == published["version"]
        assert event.payload.input == {"x": 7}
        assert event.payload.ir.order == ["start", "done"]
    pinned = await client.post(
        "/v1/runs", json={"workflow_id": fresh_name, "version": published["version"]}
    )
    assert pinned.status_code == 202


async def test_idempotency_key_returns_the_first_answer_and_appends_once(
    stack: Settings, client: httpx.AsyncClient, fresh_name: str
) -> None:
    await publish(client, fresh_name)
    headers = {"Idempotency-Key": f"submit-{fresh_name}"}
    body = {"workflow_id": fresh_name, "input": {"x": 1}}
    # Two at once (the race), then one more later: one run, one event.
    answers = await asyncio.gather(
        client.post("/v1/runs", json=body, headers=headers),
        client.post("/v1/runs", json=body, headers=headers),
    )
    later = await client.post("/v1/runs", json=body, headers=headers)
    assert [a.status_code for a in (*answers, later)] == [202, 202, 202], [a.text for a in answers]
    assert answers[0].json() == answers[1].json() == later.json()
    pos = Position.parse(later.json()["position"])
    assert await end_offset(stack, pos.topic, pos.partition) >= pos.offset + 1
    # Nothing after it for this run on its partition: read from the position to the end.
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(pos.topic, pos.partition)
        consumer.assign([tp])
        consumer.seek(tp, pos.offset)
        end = (await consumer.end_offsets([tp]))[tp]
        run_events = []
        while (await consumer.position(tp)) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                for rec in records:
                    if rec.key == later.json()["run_id"].encode():
                        run_events.append(decode_event(rec.value).type)
    finally:
        await consumer.stop()
    assert run_events.count("run.submitted") == 1, run_events

    other = await client.post("/v1/runs", json={**body, "input": {"x": 2}}, headers=headers)
    assert "different request" in is_problem(other, 422)["detail"]


async def test_cancel_a_known_run_and_404_for_unknown_or_foreign_runs(
    stack: Settings, client: httpx.AsyncClient, fresh_name: str
) -> None:
    await publish(client, fresh_name)
    run_id = (await client.post("/v1/runs", json={"workflow_id": fresh_name})).json()["run_id"]
    r = await client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 202, r.text
    event = await read_at(stack, r.json()["position"])
    assert event.type == "run.cancel_requested" and event.aggregate_id == run_id
    assert (await client.post(f"/v1/runs/{run_id}/cancel")).status_code == 202  # no body
    is_problem(await client.post("/v1/runs/no-such-run/cancel", json={}), 404)
    stranger = await new_key(stack)
    r = await client.post(
        f"/v1/runs/{run_id}/cancel", json={}, headers={"Authorization": f"Bearer {stranger}"}
    )
    is_problem(r, 404)


async def test_bad_input_is_4xx_with_a_clear_detail(
    client: httpx.AsyncClient, fresh_name: str
) -> None:
    r = await client.post(
        "/v1/workflows", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    is_problem(r, 400)
    r = await client.post(
        "/v1/workflows", json={"name": fresh_name, "definition": DEFINITION, "owner": "me"}
    )
    assert "owner: unknown field (not allowed)" in is_problem(r, 422)["errors"]
    cycle = {
        "nodes": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop"},
            {"id": "c", "type": "noop"},
        ],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "b"}],
    }
    body = is_problem(await publish(client, fresh_name, cycle), 422)
    assert any("cycle" in e and "b -> c -> b" in e for e in body["errors"]), body
    missing = {"nodes": [{"id": "a", "type": "noop"}], "edges": [{"from": "a", "to": "ghost"}]}
    body = is_problem(await publish(client, fresh_name, missing), 422)
    assert any("'ghost'" in e and "does not exist" in e for e in body["errors"]), body
    is_problem(await client.post("/v1/runs", json={"workflow_id": "never-published"}), 404)
    await publish(client, fresh_name)
    r = await client.post("/v1/runs", json={"workflow_id": fresh_name, "version": "0" * 64})
    assert "no version" in is_problem(r, 404)["detail"]
    is_problem(await client.post("/v1/runs", content=b"x" * (1024 * 1024 + 1)), 413)
    is_problem(await client.get("/v1/nowhere"), 404)
    is_problem(await client.get("/v1/workflows"), 405)
    is_problem(await client.post("/v1/runs/r/patches", json={"patch": [], "reason": "x"}), 422)
    op = {"op": "remove", "path": "/nodes/0"}
    r = await client.post("/v1/runs/r/patches", json={"patch": [op], "reason": "x"})
    assert is_problem(r, 404)["detail"] == "run 'r' not found"
    is_problem(await client.post("/v1/runs/r/patches", json={"patch": [op]}), 422)
    r = await client.post("/v1/runs/r/approvals/n", json={"decision": "approve"})
    assert is_problem(r, 404)["detail"] == "run 'r' not found"
    r = await client.post("/v1/runs/r/approvals/n", json={"decision": "maybe"})
    is_problem(r, 422)


async def test_a_workflow_of_another_tenant_is_not_found(
    stack: Settings, client: httpx.AsyncClient, fresh_name: str
) -> None:
    workflow_id = (await publish(client, fresh_name)).json()["workflow_id"]
    stranger = {"Authorization": f"Bearer {await new_key(stack)}"}
    for ref in (workflow_id, fresh_name):
        is_problem(await client.post("/v1/runs", json={"workflow_id": ref}, headers=stranger), 404)


async def test_missing_or_wrong_key_is_401(command_api: str) -> None:
    async with httpx.AsyncClient(base_url=command_api, timeout=10) as anon:
        r = await anon.post("/v1/runs", json={"workflow_id": "x"})
        is_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        wrong = "aob_000000000000_" + "A" * 43
        for header in (f"Bearer {wrong}", "Basic abc", "Bearer"):
            r = await anon.post(
                "/v1/runs", json={"workflow_id": "x"}, headers={"Authorization": header}
            )
            is_problem(r, 401)


async def test_a_tenant_over_its_rate_gets_429_with_retry_after(
    client: httpx.AsyncClient,
) -> None:
    # The test server allows a burst of 60 at 50/s per tenant (see conftest).
    answers = await asyncio.gather(
        *(client.post("/v1/runs", json={"workflow_id": "nope"}) for _ in range(150))
    )
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers][:10]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert {a.status_code for a in answers} <= {404, 429}


async def test_healthz_and_metrics(command_api: str, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=command_api, timeout=10) as anon:
        r = await anon.get("/healthz")
        assert r.status_code == 200 and r.json()["checks"] == {
            "kafka_producer": "ok",
            "postgres": "ok",
        }
        await client.post("/v1/runs", json={"workflow_id": "nope"})
        text = (await anon.get("/metrics")).text
    assert 'aob_command_api_requests_total{method="POST",route="/v1/runs",status="404"}' in text
    assert "aob_command_api_request_seconds_bucket" in text
    assert "aob_command_api_events_appended_total" in text
