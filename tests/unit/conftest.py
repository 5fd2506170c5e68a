"""Fixtures of the pure lane: the scripted model served in process, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.serve import Running, running


@pytest.fixture
async def scripted() -> AsyncIterator[Running]:
    async with running() as server:
        yield server


@pytest.fixture
async def admin(scripted: Running) -> AsyncIterator[ScriptedLLMClient]:
    async with ScriptedLLMClient(scripted.url) as client:
        yield client
