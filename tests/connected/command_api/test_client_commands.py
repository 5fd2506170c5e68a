"""``aob keys create``, ``aob workflows publish`` and ``aob runs submit`` as a person runs them:
real processes, against the test's own command API."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from infra.settings import Settings
from schemas import RunSubmitted
from tests.connected.command_api.test_command_api_http import DEFINITION, read_at

pytestmark = pytest.mark.connected

ROOT = Path(__file__).resolve().parents[3]


async def aob(*args: str, port: int, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AOB_COMMAND_API_PORT": str(port), "PYTHONPATH": str(ROOT)}
    env.pop("AOB_API_KEY", None)
    if key:
        env["AOB_API_KEY"] = key
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_keys_publish_and_submit_from_the_command_line(
    stack: Settings, command_api: str, tmp_path: Path
) -> None:
    port = int(urlparse(command_api).port or 0)
    tenant = f"cli-{uuid.uuid4().hex[:10]}"
    created = await aob("keys", "create", "--tenant", tenant, port=port)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("aob_") and "export AOB_API_KEY=" in created.stderr

    path = tmp_path / "greet.json"
    path.write_text(json.dumps(DEFINITION))
    published = await aob("workflows", "publish", str(path), port=port, key=key)
    assert published.returncode == 0, published.stderr
    answer = json.loads(published.stdout)
    assert answer["name"] == "greet" and len(answer["version"]) == 64

    submitted = await aob("runs", "submit", "greet", "--input", '{"x": 3}', port=port, key=key)
    assert submitted.returncode == 0, submitted.stderr
    run = json.loads(submitted.stdout)
    event = await read_at(stack, run["position"])
    assert isinstance(event, RunSubmitted) and event.payload.input == {"x": 3}


async def test_errors_are_one_line_and_exit_1(command_api: str, tmp_path: Path) -> None:
    port = int(urlparse(command_api).port or 0)
    no_key = await aob("runs", "submit", "greet", port=port)
    wrong_key = await aob("runs", "submit", "greet", port=port, key="aob_nope")
    bad_input = await aob("runs", "submit", "greet", "--input", "{", port=port, key="aob_nope")
    cyclic = tmp_path / "cyclic.json"
    cyclic.write_text(
        json.dumps({"nodes": [{"id": "a", "type": "noop"}], "edges": [{"from": "a", "to": "a"}]})
    )
    nobody = await aob("workflows", "publish", str(cyclic), port=port, key="aob_nope")
    down = await aob("runs", "submit", "greet", port=1, key="aob_nope")
    for result, words in (
        (no_key, "AOB_API_KEY"),
        (wrong_key, "HTTP 401"),
        (bad_input, "not valid JSON"),
        (nobody, "HTTP 401"),
        (down, "not reachable"),
    ):
        assert result.returncode == 1, result
        assert words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
