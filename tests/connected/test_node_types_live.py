"""The node-type registry on the running system: registering over REST (its topic, its event,
who may have a name), configs judged by the type's schema at publish, nodes of the type routed
to its topic, and ``nodeTypes`` telling whether a worker serves it."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from auth import issue_key
from infra.kafka_admin import existing_topics
from infra.settings import Settings
from node_types import NodeTypeRegistry
from schemas.codec import decode_task
from schemas.topics import task_topic
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = pytest.mark.connected

SHOUT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1}},
    "required": ["text"],
    "additionalProperties": False,
}
NODE_TYPES = """{ nodeTypes { name builtIn description configSchema liveWorkers live } }"""
RUN = """query($id: ID!, $after: String) { run(id: $id, after: $after) {
  status nodes { id status } } }"""


def registration(**more: Any) -> dict[str, Any]:
    return {"config_schema": SHOUT_SCHEMA, "description": "Shouts the text.", **more}


def workflow(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [{"id": "start", "type": "noop"}, {"id": "loud", "type": "", "config": config}],
        "edges": [{"from": "start", "to": "loud"}],
    }


async def test_a_registered_type_is_checked_at_publish_routed_and_listed(
    services: Settings, api_key: str
) -> None:
    name = f"shout-{uuid.uuid4().hex[:8]}"
    other = await issue_key(services.postgres_dsn, f"other-{uuid.uuid4().hex[:8]}")
    async with http_clients(services, api_key) as (rest, gql):
        client = RunClient(rest, gql, RUN)
        r = await rest.put(f"/v1/node-types/{name}", json=registration())
        assert r.status_code == 200, r.text
        assert r.json()["topic"] == task_topic(name)
        assert task_topic(name) in await existing_topics(services.kafka_bootstrap)
        again = await rest.put(f"/v1/node-types/{name}", json=registration(description="Loud."))
        assert again.status_code == 200 and again.json()["description"] == "Loud."

        def with_type(config: dict[str, Any]) -> dict[str, Any]:
            wf = workflow(config)
            wf["nodes"][1]["type"] = name
            return wf

        bad = await rest.post("/v1/workflows", json={"name": "loud", "definition": with_type({})})
        assert bad.status_code == 422, bad.text
        assert f"node 'loud' ({name}): config: 'text' is a required property" in bad.text

        run_id, _ = await client.submit("loud", with_type({"text": "hi"}))
        # No worker serves the type here: its node waits, scheduled, on the type's topic.
        await client.until(run_id, lambda run: _status_of(run, "loud", "SCHEDULED"))
        task = await _task_on(services, task_topic(name), run_id)
        assert (task.node_id, task.node_type, task.config) == ("loud", name, {"text": "hi"})

        listed = {t["name"]: t for t in (await client.query(NODE_TYPES))["nodeTypes"]}
        assert listed[name]["builtIn"] is False
        assert listed[name]["configSchema"] == SHOUT_SCHEMA
        assert listed[name]["live"] is False
        assert listed["http"]["builtIn"] is True
        # The coordinator runs a map's items itself: served whenever the engine runs.
        assert (listed["map"]["live"], listed["map"]["liveWorkers"]) == (True, [])

        pool = await asyncpg.create_pool(services.postgres_dsn, min_size=1, max_size=2)
        try:
            registry = NodeTypeRegistry(pool)
            tenant = r.json()["tenant"]
            await registry.beat(tenant, [name], "host:1234")
            listed = {t["name"]: t for t in (await client.query(NODE_TYPES))["nodeTypes"]}
            assert (listed[name]["live"], listed[name]["liveWorkers"]) == (True, ["host:1234"])
            await registry.gone([name], "host:1234")
            listed = {t["name"]: t for t in (await client.query(NODE_TYPES))["nodeTypes"]}
            assert (listed[name]["live"], listed[name]["liveWorkers"]) == (False, [])
        finally:
            await pool.close()

    async with http_clients(services, other) as (rest, gql):
        taken = await rest.put(f"/v1/node-types/{name}", json=registration())
        assert taken.status_code == 409, taken.text
        assert "registered by another tenant" in taken.json()["detail"]
        # Another tenant neither sees the type nor may publish with it.
        listed = (await RunClient(rest, gql, RUN).query(NODE_TYPES))["nodeTypes"]
        assert name not in {t["name"] for t in listed}
        wf = workflow({"text": "hi"})
        wf["nodes"][1]["type"] = name
        r = await rest.post("/v1/workflows", json={"name": "loud", "definition": wf})
        assert r.status_code == 422 and f"unknown type {name!r}" in r.text, r.text


async def test_bad_registrations_are_refused_with_their_reason(
    services: Settings, api_key: str
) -> None:
    async with http_clients(services, api_key) as (rest, _):
        builtin = await rest.put("/v1/node-types/http", json=registration())
        assert builtin.status_code == 409 and "built-in" in builtin.json()["detail"]
        for bad_name in ("Shout", "9lives", "a" * 49, "sh%C3%B6ut"):
            r = await rest.put(f"/v1/node-types/{bad_name}", json=registration())
            assert r.status_code == 422, (bad_name, r.text)
        r = await rest.put("/v1/node-types/okname", json={"config_schema": {"type": "objekt"}})
        assert r.status_code == 422, r.text
        assert "config_schema: not a valid JSON Schema" in r.json()["detail"]
        r = await rest.put("/v1/node-types/okname", json={"config_schema": {}, "extra": 1})
        assert r.status_code == 422, r.text


def _status_of(run: dict[str, Any], node_id: str, status: str) -> None:
    assert {n["id"]: n["status"] for n in run["nodes"]}.get(node_id) == status, run


async def _task_on(services: Settings, topic: str, run_id: str) -> Any:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:

        async def find() -> Any:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    task = decode_task(record.value)
                    if task.run_id == run_id:
                        return task
            raise AssertionError(f"no task of run {run_id} on {topic} yet")

        return await eventually(find, timeout=30)
    finally:
        await consumer.stop()
