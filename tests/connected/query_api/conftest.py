"""A query API subprocess reading a fresh Postgres schema of read models, which the tests
fill themselves: nothing here touches (or is touched by) the live projector's tables."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from auth import issue_key
from infra.settings import Settings
from read_model import schema as read_db
from tests.connected.query_api.support import CATCH_UP_TIMEOUT_S, QueryApi
from tests.helpers import eventually, free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def read_schema() -> str:
    return f"qapi_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
async def query_api(stack: Settings, read_schema: str) -> AsyncIterator[QueryApi]:
    conn = await read_db.connect(stack.postgres_dsn, read_schema)
    try:
        await read_db.ensure_schema(conn, read_schema)
    finally:
        await conn.close()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AOB_QUERY_API_PORT": str(port),
        "AOB_QUERY_API_READ_SCHEMA": read_schema,
        "AOB_QUERY_API_CATCH_UP_TIMEOUT_S": str(CATCH_UP_TIMEOUT_S),
    }
    proc = subprocess.Popen([sys.executable, "-m", "query_api"], cwd=ROOT, env=env)
    api = QueryApi(url=f"http://{stack.host}:{port}", schema=read_schema)
    try:

        async def healthy() -> None:
            assert proc.poll() is None, f"query_api exited with {proc.returncode}"
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"{api.url}/healthz")
            assert response.status_code == 200

        await eventually(healthy, timeout=30, retry_on=(AssertionError, httpx.HTTPError))  # type: ignore[arg-type]
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {read_schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture
async def pg(stack: Settings, query_api: QueryApi) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's read schema, for writing rows as a projector would."""
    conn = await read_db.connect(stack.postgres_dsn, query_api.schema)
    yield conn
    await conn.close()


async def _key_for(settings: Settings, tenant: str) -> str:
    return await issue_key(settings.postgres_dsn, tenant)


@pytest.fixture
def tenant() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def key(stack: Settings, tenant: str) -> str:
    return await _key_for(stack, tenant)


@pytest.fixture
async def other_key(stack: Settings) -> str:
    return await _key_for(stack, f"o-{uuid.uuid4().hex[:12]}")
