"""A projector subprocess writing into a fresh Postgres schema, so that nothing here touches
(or is touched by) the live read models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.bus import EventBus
from infra.settings import Settings
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[3]


class ProjectorProcess:
    def __init__(self, schema: str, name: str) -> None:
        self.schema = schema
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AOB_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "projections", "--schema", self.schema, "--name", self.name],
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
def projector(stack: Settings, unique: str) -> Iterator[ProjectorProcess]:
    p = ProjectorProcess(schema=f"t_{unique[:16]}", name="test")
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


@pytest.fixture
async def bus(stack: Settings) -> AsyncIterator[EventBus]:
    b = EventBus(stack.kafka_bootstrap, client_id="aob-test")
    await b.start()
    yield b
    await b.stop()
