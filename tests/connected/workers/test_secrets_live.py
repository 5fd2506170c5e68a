"""A secret used by a run of the running system reaches where it is meant to go (the http
node's target, in its headers; the model, in the agent's prompt) and nowhere else: after the
run, its bytes are in no Kafka record, no PostgreSQL table (``pg_dump``), no MinIO object and
no log file of the stack, even though the target and the model both echo it back."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from minio import Minio

from auth import issue_key
from infra.scripted_llm.client import ScriptedLLMClient
from infra.settings import Settings
from infra.stack.postgres import bin_dir
from processors.stored import encode
from run_model.testing import build_ir
from tests.connected.conftest import LIVE_HTTP_TARGET
from tests.helpers import eventually
from tests.http_support import LoopbackServer
from tests.unit.test_decider import Harness

pytestmark = pytest.mark.connected

RUN = """query($id: ID!) { run(id: $id) {
  status error output nodes { id status output error } } }"""


def workflow(token: str) -> dict[str, Any]:
    echo = "http://{}:{}/echo".format(*LIVE_HTTP_TARGET)
    return {
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "config": {
                    "method": "POST",
                    "url": echo,
                    "headers": {
                        "X-Api-Key": "{{ secrets.API_TOKEN }}",
                        "Authorization": "Bearer {{ secrets.API_TOKEN }}",
                    },
                    "body": {"note": "token {{ secrets.API_TOKEN }} in the body too"},
                },
            },
            {
                "id": "think",
                "type": "agent",
                "config": {
                    "prompt": f"{token}: call the service with {{{{ secrets.API_TOKEN }}}}",
                    "max_turns": 2,
                },
            },
        ],
        "edges": [{"from": "call", "to": "think"}],
    }


@pytest.fixture
async def admin(services: Settings, unique: str) -> AsyncIterator[httpx.AsyncClient]:
    key = await issue_key(services.postgres_dsn, f"sec-{unique[:10]}", scopes=["admin"])
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        yield client


async def log_offsets(settings: Settings) -> dict[TopicPartition, int]:
    """The end of every partition of every topic: where records written from now on start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in await consumer.topics()
            for p in consumer.partitions_for_topic(t) or ()
        ]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def records_since(settings: Settings, since: dict[TopicPartition, int]) -> list[bytes]:
    """Every record written to any topic after ``since`` (keys, values and headers, with
    the coordinator's compressed states opened), read up to the end each partition has now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in await consumer.topics()
            for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(tps)
        todo = {tp: end for tp, end in ends.items() if end > since.get(tp, 0)}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, since.get(tp, 0))
        found: list[bytes] = []
        while todo:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for r in records:
                    found += [r.key or b"", _opened(r.value or b"")]
                    found += [k.encode() + b"=" + v for k, v in r.headers or ()]
                    if r.offset + 1 >= todo.get(tp, 0):
                        todo.pop(tp, None)
        return found
    finally:
        await consumer.stop()


def _opened(value: bytes) -> bytes:
    """A coordinator state decompressed (``W<partition>:<length>:<zlib workflow><zlib rest>``,
    or an earlier release's ``Z<partition>:<zlib>``); anything else as it is."""
    head, found, body = value[1:].partition(b":")
    if not (found and head.isdigit()):
        return value
    try:
        if value.startswith(b"Z"):
            return zlib.decompress(body)
        if value.startswith(b"W"):
            length, _, parts = body.partition(b":")
            split = int(length)
            return zlib.decompress(parts[:split]) + zlib.decompress(parts[split:])
    except (zlib.error, ValueError):
        return value
    return value


def test_a_stored_state_is_read_whole() -> None:
    # The search above must see into both stored forms of a live state.
    h = Harness(build_ir({"a": "noop"}, []), run_input={"token": "sk-live-abc"})
    whole = b"Z1:" + zlib.compress(h.run.model_dump_json().encode())
    for raw in (encode(h.run, partition=1), whole):
        opened = _opened(raw)
        assert b"sk-live-abc" in opened and b'"ir"' in opened, raw[:2]


def pg_dump(settings: Settings) -> bytes:
    bins = bin_dir()
    assert bins is not None, "pg_dump not found"
    done = subprocess.run(
        [str(bins / "pg_dump"), "--data-only", settings.postgres_dsn],
        capture_output=True,
        check=True,
        timeout=600,
    )
    return done.stdout


def minio_objects_since(settings: Settings, since: datetime) -> list[tuple[str, bytes]]:
    client = Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        secure=False,
    )
    found = []
    for obj in client.list_objects(settings.minio_bucket, recursive=True):
        if obj.last_modified is not None and obj.last_modified >= since:
            response = client.get_object(settings.minio_bucket, obj.object_name)
            try:
                found.append((obj.object_name, response.read()))
            finally:
                response.close()
                response.release_conn()
    return found


async def test_a_secret_reaches_its_target_and_the_model_and_nothing_else(
    services: Settings,
    admin: httpx.AsyncClient,
    live_http_target: LoopbackServer,
    scripted: ScriptedLLMClient,
    unique: str,
) -> None:
    token = f"tok{uuid.uuid4().hex[:12]}"
    secret = f"s3cret-{uuid.uuid4().hex}"
    since = await log_offsets(services)
    started = datetime.now(UTC) - timedelta(seconds=5)  # MinIO's clock is this machine's

    r = await admin.put(f"{services.command_api_url}/v1/secrets/API_TOKEN", json={"value": secret})
    assert r.status_code in (200, 201, 204), r.text
    # The model echoes the secret back in its answer, as a careless model might.
    await scripted.add_script(
        token,
        [{"tool_calls": [{"name": "finish", "arguments": {"output": f"used {secret} ok"}}]}],
    )
    name = f"secret-{unique[:8]}"
    r = await admin.post(
        f"{services.command_api_url}/v1/workflows",
        json={"name": name, "definition": workflow(token)},
    )
    assert r.status_code == 201, r.text
    r = await admin.post(f"{services.command_api_url}/v1/runs", json={"workflow_id": name})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]

    async def finished() -> dict[str, Any]:
        answer = await admin.post(
            f"{services.query_api_url}/graphql", json={"query": RUN, "variables": {"id": run_id}}
        )
        run = answer.json()["data"]["run"]
        assert run is not None and run["status"] in ("COMPLETED", "FAILED"), run
        return dict(run)

    run = await eventually(finished, timeout=90)
    assert run["status"] == "COMPLETED", run

    # Where it was meant to go, it went.
    (seen,) = [s for s in live_http_target.seen if s.path == "/echo" and secret in str(s.headers)]
    assert seen.headers.get("X-Api-Key") == secret
    assert seen.headers.get("Authorization") == f"Bearer {secret}"
    assert secret.encode() in seen.body
    prompts = [str(req["body"]) for req in await scripted.requests(token)]
    assert prompts and all(secret in p for p in prompts)
    # What was reported names it instead of carrying it.
    nodes = {n["id"]: n for n in run["nodes"]}
    shown = str(nodes["call"]["output"]) + str(nodes["think"]["output"])
    assert "[secret:API_TOKEN]" in shown, shown
    assert secret not in str(run)

    # Nowhere else: the log, PostgreSQL, MinIO, the logs.
    needle = secret.encode()
    await asyncio.sleep(2)  # the projector's and the workers' last writes of the run
    in_log = [b for b in await records_since(services, since) if needle in b]
    assert in_log == [], in_log[:3]
    dump = await asyncio.to_thread(pg_dump, services)
    assert needle not in dump
    objects = await asyncio.to_thread(minio_objects_since, services, started)
    assert [name for name, body in objects if needle in body] == []
    logs = sorted((services.home / "logs").glob("*.log"))
    assert logs, "no log files found"
    assert [p.name for p in logs if needle in p.read_bytes()] == []
