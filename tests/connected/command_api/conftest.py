"""A command API of its own for these tests: ``python -m command_api`` on a free port, against
the real stack, and API keys of fresh tenants."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from auth import issue_key
from infra.settings import Settings
from tests.helpers import eventually, free_port, stop_process

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def command_api_process(stack: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **os.environ,
        "AOB_COMMAND_API_PORT": str(port),
        "AOB_HOST": "127.0.0.1",
        # Small enough that a test reaches it, large enough for every other test here.
        "AOB_COMMAND_API_RATE_PER_SECOND": "50",
        "AOB_COMMAND_API_RATE_BURST": "60",
        "PYTHONPATH": str(ROOT),
    }
    log = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "command_api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_process(proc, grace_s=10)
        log.close()


@pytest.fixture(scope="session")
async def command_api(command_api_process: tuple[str, subprocess.Popen[bytes]]) -> str:
    url, proc = command_api_process

    async def healthy() -> None:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"command_api exited {proc.returncode}: {err[-2000:]}")
        async with httpx.AsyncClient(timeout=2) as client:
            try:
                r = await client.get(f"{url}/healthz")
            except httpx.HTTPError as e:
                raise AssertionError(str(e)) from e
        assert r.status_code == 200, r.text

    await eventually(healthy, timeout=60, interval=0.2)
    return url


async def new_key(settings: Settings, tenant: str | None = None) -> str:
    return await issue_key(settings.postgres_dsn, tenant or f"ca-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def client(stack: Settings, command_api: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the command API with the key of a fresh tenant."""
    key = await new_key(stack)
    async with httpx.AsyncClient(
        base_url=command_api, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture
def fresh_name() -> str:
    return f"wf-{uuid.uuid4().hex[:10]}"
