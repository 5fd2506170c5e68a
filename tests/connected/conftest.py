"""Fixtures for tests that talk to the whole running system through its real endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from auth import issue_key
from infra.bus import EventBus
from infra.settings import Settings
from infra.stack import Stack


@pytest.fixture(scope="session")
async def services(stack: Settings) -> Settings:
    """Every AOB service running (``aob up``), on top of the stack's servers."""
    await Stack(stack).up()
    return stack


async def _key_for(settings: Settings, tenant: str) -> str:
    return await issue_key(settings.postgres_dsn, tenant)


@pytest.fixture
async def api_key(services: Settings, unique: str) -> str:
    """An API key of a fresh tenant, so no test sees another's workflows or runs."""
    return await _key_for(services, f"t-{unique[:12]}")


@pytest.fixture
async def other_tenant_key(services: Settings, unique: str) -> str:
    return await _key_for(services, f"o-{unique[:12]}")


@pytest.fixture
async def bus(stack: Settings) -> AsyncIterator[EventBus]:
    """A producer of the stack's Kafka, for tests that append events or tasks themselves."""
    b = EventBus(stack.kafka_bootstrap, client_id="aob-test")
    await b.start()
    yield b
    await b.stop()
