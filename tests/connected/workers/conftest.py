"""A worker subprocess (``python -m workers``), readers of the topics it writes, and the
running system's scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_metadata import topic_partitions
from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.mode import uses_scripted_model
from infra.settings import Settings
from tests.helpers import stop_process

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def scripted(services: Settings) -> AsyncIterator[ScriptedLLMClient]:
    assert uses_scripted_model(), "run the connected tests without OPENAI_API_KEY (make test)"
    async with ScriptedLLMClient(services.scripted_llm_url) as client:
        yield client


@pytest.fixture
def worker_process(stack: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    # The system's own workers (``aob up``) may share the consumer group and take a task
    # first; both run this code, so the assertions hold whichever answers.
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--types", "noop,transform,condition"],
            cwd=ROOT,
            # The worker SDK (``aob``, which serves the built-ins too) lives in sdk/.
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sdk")])},
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while b"serving" not in log_path.read_bytes():  # signal handlers are in place by then
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.1)
    yield proc
    stop_process(proc, grace_s=30)
    assert proc.returncode == 0  # SIGTERM is a clean stop


class TopicReader:
    """Everything appended to a topic after the reader was made (no consumer group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def start(self) -> None:
        await self.consumer.start()
        found = await topic_partitions(self.consumer, self.topic)
        assert found, f"no topic {self.topic}"
        parts = [TopicPartition(self.topic, p) for p in found]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end now, not lazily at the first fetch
            await self.consumer.position(tp)

    async def read(self) -> list[object]:
        batches = await self.consumer.getmany(timeout_ms=200)
        return [r for records in batches.values() for r in records]


@pytest.fixture
async def reader_factory(stack: Settings) -> AsyncIterator[object]:
    readers: list[TopicReader] = []

    async def make(topic: str) -> TopicReader:
        r = TopicReader(stack.kafka_bootstrap, topic)
        await r.start()
        readers.append(r)
        return r

    yield make
    for r in readers:
        await r.consumer.stop()
