"""The servers under AOB are real and behave the way AOB relies on them:
Kafka consumer groups with manual commits and transactions, PostgreSQL round trips, MinIO
objects, and a local stack that survives a SIGKILL of its Kafka with its data intact."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from minio import Minio

from infra.kafka_admin import ensure_topics
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.process import owned_pid, pid_alive, pid_file, port_free
from schemas.topics import TopicSpec
from tests.helpers import eventually, free_ports

pytestmark = pytest.mark.connected


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=b"k") for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, expected: int, **kwargs: object) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kwargs,  # type: ignore[arg-type]
    )
    await consumer.start()
    got: list[bytes] = []
    try:

        async def enough() -> None:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(r.value for r in records)
            assert len(got) >= expected, len(got)

        await eventually(enough, timeout=30, interval=0)
    finally:
        await consumer.stop()
    return got


async def test_consumer_group_resumes_after_manual_commit(stack: Settings, unique: str) -> None:
    topic, group = f"test.group.{unique}", f"test-group-{unique}"
    await ensure_topics(stack.kafka_bootstrap, [TopicSpec(topic, 1, {})])
    values = [f"v{i}".encode() for i in range(10)]
    await _produce(stack.kafka_bootstrap, topic, values)
    tp = TopicPartition(topic, 0)

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = consumer()
    await first.start()
    try:
        seen = [await first.getone() for _ in range(4)]
        assert [r.value for r in seen] == values[:4]
        await first.commit({tp: seen[-1].offset + 1})
        assert await first.committed(tp) == 4
    finally:
        await first.stop()

    second = consumer()
    await second.start()
    try:
        rec = await asyncio.wait_for(second.getone(), 30)
        assert (rec.offset, rec.value) == (4, values[4])
    finally:
        await second.stop()


async def test_transactions_read_committed_sees_commits_not_aborts(
    stack: Settings, unique: str
) -> None:
    topic = f"test.txn.{unique}"
    await ensure_topics(stack.kafka_bootstrap, [TopicSpec(topic, 1, {})])
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap,
        transactional_id=f"test-txn-{unique}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2")
    finally:
        await producer.stop()

    got = await _read_all(stack.kafka_bootstrap, topic, 2, isolation_level="read_committed")
    assert got == [b"committed-1", b"committed-2"]


async def test_postgres_round_trip(stack: Settings, unique: str) -> None:
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        table = f"t_{unique}"
        await conn.execute(f"create temp table {table} (id int primary key, body jsonb)")
        await conn.executemany(
            f"insert into {table} values ($1, $2)", [(i, f'{{"n": {i}}}') for i in range(3)]
        )
        rows = await conn.fetch(f"select id, body->>'n' as n from {table} order by id")
        assert [(r["id"], r["n"]) for r in rows] == [(0, "0"), (1, "1"), (2, "2")]
        assert await conn.fetchval("select current_database()") == stack.postgres_db
    finally:
        await conn.close()


def test_minio_put_stat_get(stack: Settings, unique: str) -> None:
    client = Minio(
        stack.minio_endpoint,
        access_key=stack.minio_access_key,
        secret_key=stack.minio_secret_key,
        secure=False,
    )
    assert client.bucket_exists(stack.minio_bucket)
    name, body = f"test/{unique}", os.urandom(4096)
    client.put_object(stack.minio_bucket, name, io.BytesIO(body), len(body))
    try:
        assert client.stat_object(stack.minio_bucket, name).size == len(body)
        response = client.get_object(stack.minio_bucket, name)
        try:
            assert response.read() == body
        finally:
            response.close()
            response.release_conn()
    finally:
        client.remove_object(stack.minio_bucket, name)


@pytest.fixture
def second_home() -> object:
    # World-searchable, so that the PostgreSQL OS user can reach it when running as root.
    home = Path(tempfile.mkdtemp(prefix="aob-second-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


async def test_second_stack_survives_kafka_sigkill_and_stops_clean(
    stack: Settings, unique: str, second_home: Path
) -> None:
    kafka_port, controller, pg_port, minio_port, console = free_ports(5)
    settings = Settings(
        home=second_home,
        cache_dir=stack.cache_dir,
        kafka_port=kafka_port,
        kafka_controller_port=controller,
        postgres_port=pg_port,
        minio_port=minio_port,
        minio_console_port=console,
        kafka_bootstrap_servers=None,
        AOB_POSTGRES_DSN=None,
        AOB_MINIO_ENDPOINT=None,
    )
    assert settings.kafka_bootstrap == f"127.0.0.1:{kafka_port}"
    second = Stack(settings, services=[])
    try:
        await second.up(infra_only=True)
        pids = {c.name: c.pid for c in await second.components()}
        assert all(pids.values()), pids

        topic = f"test.kill.{unique}"
        await ensure_topics(settings.kafka_bootstrap, [TopicSpec(topic, 2, {})])
        values = [f"r{i}".encode() for i in range(200)]
        await _produce(settings.kafka_bootstrap, topic, values)

        kafka_pid = pids["kafka"]
        assert kafka_pid is not None
        os.kill(kafka_pid, signal.SIGKILL)

        def killed() -> None:
            assert not pid_alive(kafka_pid)

        await eventually(killed, timeout=10)
        assert owned_pid(pid_file(settings, "kafka"), str(settings.home)) is None

        await second.up(infra_only=True)
        after = {c.name: c for c in await second.components()}
        assert all(c.running for c in after.values()), after
        assert after["kafka"].pid not in (None, kafka_pid)
        assert after["postgres"].pid == pids["postgres"]  # healthy ones were left alone
        assert after["minio"].pid == pids["minio"]

        got = await _read_all(settings.kafka_bootstrap, topic, len(values))
        assert sorted(got) == sorted(values)
    finally:
        alive_before = [c.pid for c in await second.components() if c.pid]
        await second.down()
    for pid in alive_before:
        assert not pid_alive(pid), pid
    for port in (kafka_port, controller, pg_port, minio_port, console):
        assert port_free("127.0.0.1", port), port
    assert (second_home / "kafka" / "data" / "meta.properties").exists()  # data kept
