"""Fixtures for tests that talk to the whole running system through its real endpoints."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from auth import issue_key
from infra.bus import EventBus
from infra.settings import Settings
from infra.stack import Stack
from tests.connected.tenants import unthrottled_key
from tests.http_support import LoopbackServer

# A loopback target that the workers of the test stack may reach through the http node: the
# stack is started with it in AOB_HTTP_ALLOWLIST (here, or by `make test`). Outside the
# kernel's range of ports for outgoing connections, so it is free to bind. A second stack on
# the same machine (other AOB_*_PORT settings) takes another with AOB_TEST_HTTP_TARGET_PORT.
LIVE_HTTP_TARGET = ("127.0.0.1", int(os.environ.get("AOB_TEST_HTTP_TARGET_PORT", "18095")))
# A loopback MCP server the agents of the test stack may reach (their MCP client goes through
# the same guard and allowlist); the stack is started with it in AOB_HTTP_ALLOWLIST too.
LIVE_MCP_TARGET = ("127.0.0.1", int(os.environ.get("AOB_TEST_MCP_PORT", "18096")))


@pytest.fixture(scope="session")
async def services(stack: Settings) -> Settings:
    """Every AOB service running (``aob up``), on top of the stack's servers."""
    targets = ["{}:{}".format(*LIVE_HTTP_TARGET), "{}:{}".format(*LIVE_MCP_TARGET)]
    os.environ.setdefault("AOB_HTTP_ALLOWLIST", ",".join(targets))
    await Stack(stack).up()
    return stack


@pytest.fixture
def live_http_target(services: Settings) -> Iterator[LoopbackServer]:
    """A loopback HTTP server the running workers are allowed to call."""
    allowed = os.environ.get("AOB_HTTP_ALLOWLIST", "")
    target = "{}:{}".format(*LIVE_HTTP_TARGET)
    assert target in allowed.split(","), (
        f"the stack's workers must allow {target}: start it with AOB_HTTP_ALLOWLIST={target} "
        "(make test does)"
    )
    server = LoopbackServer(host=LIVE_HTTP_TARGET[0], port=LIVE_HTTP_TARGET[1])
    with server.running():
        yield server


async def _key_for(settings: Settings, tenant: str) -> str:
    return await issue_key(settings.postgres_dsn, tenant)


@pytest.fixture
async def api_key(services: Settings, unique: str) -> str:
    """An API key of a fresh tenant, so no test sees another's workflows or runs."""
    return await _key_for(services, f"t-{unique[:12]}")


@pytest.fixture
async def bulk_api_key(services: Settings, unique: str) -> str:
    """An API key of a fresh tenant that may submit in bulk (``unthrottled_key``)."""
    return await unthrottled_key(services, f"b-{unique[:12]}")


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
