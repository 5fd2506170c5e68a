"""Fixtures for tests that talk to the whole running system through its real endpoints."""

from __future__ import annotations

import asyncpg
import pytest

from auth import create_key, ensure_schema
from infra.settings import Settings
from infra.stack import Stack


@pytest.fixture(scope="session")
async def services(stack: Settings) -> Settings:
    """Every AOB service running (``aob up``), on top of the stack's servers."""
    await Stack(stack).up()
    return stack


async def _key_for(settings: Settings, tenant: str) -> str:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await ensure_schema(conn)
        return await create_key(conn, tenant)
    finally:
        await conn.close()


@pytest.fixture
async def api_key(services: Settings, unique: str) -> str:
    """An API key of a fresh tenant, so no test sees another's workflows or runs."""
    return await _key_for(services, f"t-{unique[:12]}")


@pytest.fixture
async def other_tenant_key(services: Settings, unique: str) -> str:
    return await _key_for(services, f"o-{unique[:12]}")
