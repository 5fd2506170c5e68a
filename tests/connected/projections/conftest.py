"""A projector subprocess writing into a fresh Postgres schema, so that nothing here touches
(or is touched by) the live read models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from infra.kafka_admin import ensure_topics
from infra.settings import Settings
from schemas.topics import TopicSpec
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[3]


class ProjectorProcess:
    def __init__(self, schema: str, name: str, prefix: str) -> None:
        self.schema = schema
        self.name = name
        self.prefix = prefix
        self.runs_topic = f"{prefix}.runs.events"
        self.workflows_topic = f"{prefix}.workflows.events"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AOB_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "projections",
                "--schema",
                self.schema,
                "--name",
                self.name,
                "--topic-prefix",
                self.prefix,
            ],
            cwd=ROOT,
            env=env,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
async def projector(stack: Settings, unique: str) -> AsyncIterator[ProjectorProcess]:
    # A log of its own: the system's coordinator would otherwise act on these synthetic runs.
    p = ProjectorProcess(schema=f"t_{unique[:16]}", name="test", prefix=f"test-{unique[:12]}")
    await ensure_topics(
        stack.kafka_bootstrap,
        [TopicSpec(p.runs_topic, stack.topic_partitions), TopicSpec(p.workflows_topic, 2)],
    )
    p.start()
    yield p
    p.stop()


@pytest.fixture
async def pg(stack: Settings, projector: ProjectorProcess) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(
        stack.postgres_dsn, server_settings={"search_path": projector.schema}
    )

    async def tables_made() -> None:
        assert await conn.fetchval("SELECT to_regclass('node_executions')") is not None

    await eventually(tables_made, timeout=60)
    yield conn
    projector.stop()
    await conn.execute(f"DROP SCHEMA IF EXISTS {projector.schema} CASCADE")
    await conn.close()
