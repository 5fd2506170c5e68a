"""Poison records on the live system: parked, noted, and the system goes on.

A record that can never be decoded must not stop anything. On ``aob.runs.events`` the
coordinator dead-letters it to ``aob.dlq`` (headers ``aob-dlq-reason``, ``aob-dlq-source``)
and the projector notes its position in ``projection_poison``; on a task topic the worker
dead-letters it. Poison goes to every partition, so whatever partition a later run lands on
has a poison record before it, and runs submitted afterwards must all complete.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from infra.kafka_metadata import topic_partitions
from infra.settings import Settings
from schemas.topics import DLQ, RUN_EVENTS, task_topic
from tests.connected.live import pid_of
from tests.helpers import eventually

pytestmark = pytest.mark.connected

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "fan_out_fan_in.json").read_text()
)

NOT_JSON = b"{not json"
# JSON, but no event: a known type with a payload that misses every field it needs.
NOT_AN_EVENT = json.dumps({"type": "run.submitted", "event_id": "x", "payload": {}}).encode()
# JSON, but no task.
NOT_A_TASK = json.dumps({"task_id": 42, "node_type": "noop"}).encode()


@dataclass(frozen=True)
class Sent:
    key: bytes
    value: bytes
    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> bytes:
        return f"{self.topic}:{self.partition}:{self.offset}".encode()


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = await topic_partitions(consumer, topic)
    assert found, f"no topic {topic}"
    return [TopicPartition(topic, p) for p in found]


class DlqReader:
    """``aob.dlq`` from the beginning, with a fresh consumer (no group)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.records: list[ConsumerRecord] = []

    async def start(self) -> None:
        await self.consumer.start()
        tps = await partitions(self.consumer, DLQ)
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def read(self) -> list[ConsumerRecord]:
        for records in (await self.consumer.getmany(timeout_ms=500, max_records=10_000)).values():
            self.records.extend(records)
        return self.records

    async def parked(self, sent: list[Sent]) -> dict[bytes, list[ConsumerRecord]]:
        """Every sent record's dead letters (all of them, by key); asserts each has one."""
        keys = {s.key for s in sent}
        found: dict[bytes, list[ConsumerRecord]] = {}
        for r in await self.read():
            if r.key in keys:
                found.setdefault(r.key, []).append(r)
        missing = [s.source.decode() for s in sent if s.key not in found]
        assert not missing, f"not in {DLQ} yet: {missing}"
        return found


@pytest.fixture
async def producer(services: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A raw producer: poison needs to go to a chosen partition, past every codec."""
    p = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def dlq(services: Settings) -> AsyncIterator[DlqReader]:
    reader = DlqReader(services.kafka_bootstrap)
    await reader.start()
    yield reader
    await reader.consumer.stop()


@pytest.fixture
async def pg(services: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(services.postgres_dsn)
    yield conn
    await conn.close()


async def poison_every_partition(
    producer: AIOKafkaProducer, topic: str, values: list[bytes]
) -> list[Sent]:
    sent = []
    for partition in sorted(await producer.partitions_for(topic)):
        for value in values:
            key = f"poison-{uuid.uuid4()}".encode()
            md = await producer.send_and_wait(topic, value=value, key=key, partition=partition)
            sent.append(Sent(key, value, md.topic, md.partition, md.offset))
    return sent


def check_dead_letters(parked: dict[bytes, list[ConsumerRecord]], sent: list[Sent]) -> None:
    for s in sent:
        for record in parked[s.key]:
            headers = dict(record.headers)
            assert record.value == s.value, "the dead letter carries the record's own bytes"
            assert headers["aob-dlq-source"] == s.source, (headers, s)
            reason = headers["aob-dlq-reason"]
            if s.value == NOT_JSON:
                assert b"not JSON" in reason, reason
            else:
                assert b"invalid" in reason, reason


async def run_examples(services: Settings, api_key: str, pg: asyncpg.Connection, n: int) -> None:
    """Publish the fan-out-fan-in example, submit ``n`` runs, wait until all are COMPLETED."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(
        base_url=services.command_api_url, headers=headers, timeout=30
    ) as rest:
        published = await rest.post("/v1/workflows", json=EXAMPLE)
        assert published.status_code == 201, published.text
        run_ids = []
        for i in range(n):
            r = await rest.post(
                "/v1/runs",
                json={
                    "workflow_id": published.json()["workflow_id"],
                    "input": {"name": f"after-poison-{i}", "numbers": list(range(i + 1))},
                },
            )
            assert r.status_code == 202, r.text
            run_ids.append(r.json()["run_id"])

    async def completed() -> None:
        rows = await pg.fetch(
            "SELECT run_id, status FROM runs WHERE run_id = ANY($1::text[])", run_ids
        )
        statuses = {r["run_id"]: r["status"] for r in rows}
        assert [statuses.get(r) for r in run_ids] == ["COMPLETED"] * n, statuses

    await eventually(completed, timeout=120, interval=0.5)
    report = await pg.fetchrow(
        "SELECT status, output FROM node_executions WHERE run_id = $1 AND node_id = 'report'",
        run_ids[-1],
    )
    assert report["status"] == "SUCCEEDED"
    assert json.loads(report["output"]) == {
        "summary": f"HELLO AFTER-POISON-{n - 1}: {n} items, sum {sum(range(n))}"
    }


async def test_poison_on_the_run_topic_is_parked_noted_and_runs_go_on(
    services: Settings,
    api_key: str,
    producer: AIOKafkaProducer,
    dlq: DlqReader,
    pg: asyncpg.Connection,
) -> None:
    coordinator, projector = pid_of(services, "coordinator"), pid_of(services, "projections")
    sent = await poison_every_partition(producer, RUN_EVENTS, [NOT_JSON, NOT_AN_EVENT])

    # The coordinator dead-letters each, with why and where.
    parked = await eventually(lambda: dlq.parked(sent), timeout=60, interval=0.5)
    check_dead_letters(parked, sent)

    # The projector notes each position and goes on.
    async def noted() -> dict[bytes, str]:
        reasons = {}
        for s in sent:
            reason = await pg.fetchval(
                "SELECT reason FROM projection_poison"
                ' WHERE topic = $1 AND partition = $2 AND "offset" = $3',
                s.topic,
                s.partition,
                s.offset,
            )
            assert reason is not None, f"projection_poison has nothing at {s.source.decode()}"
            reasons[s.key] = reason
        return reasons

    reasons = await eventually(noted, timeout=60, interval=0.5)
    for s in sent:
        assert ("not JSON" if s.value == NOT_JSON else "invalid") in reasons[s.key]

    # Runs submitted afterwards (each partition has poison before them) all complete.
    await run_examples(services, api_key, pg, 5)
    # ... and no service had to die for that.
    assert (pid_of(services, "coordinator"), pid_of(services, "projections")) == (
        coordinator,
        projector,
    )


async def test_poison_task_is_parked_and_the_worker_goes_on(
    services: Settings,
    api_key: str,
    producer: AIOKafkaProducer,
    dlq: DlqReader,
    pg: asyncpg.Connection,
) -> None:
    worker = pid_of(services, "workers")
    assert worker is not None
    sent = await poison_every_partition(producer, task_topic("noop"), [NOT_JSON, NOT_A_TASK])

    parked = await eventually(lambda: dlq.parked(sent), timeout=60, interval=0.5)
    check_dead_letters(parked, sent)

    # The example ends in a noop node: it needs the noop consumer that met the poison.
    await run_examples(services, api_key, pg, 5)
    assert pid_of(services, "workers") == worker
