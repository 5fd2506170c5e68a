"""A query API subprocess reading a fresh Postgres schema of read models, which the tests
fill themselves: nothing here touches (or is touched by) the live projector's tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from auth import issue_key
from infra.settings import Settings
from read_model import schema as read_db
from tests.connected.query_api.support import QueryApi, query_api_process


@pytest.fixture(scope="module")
def read_schema() -> str:
    return f"qapi_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
async def query_api(stack: Settings, read_schema: str) -> AsyncIterator[QueryApi]:
    async with query_api_process(stack, read_schema) as api:
        yield api


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
