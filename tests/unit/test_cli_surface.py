"""The CLI is a promise to users and their scripts (API.md): its commands change on purpose."""

from __future__ import annotations

import os
import subprocess
import sys

import typer
from typer.testing import CliRunner

from cli.main import app

EXPECTED = {
    "up": None,
    "down": None,
    "status": None,
    "demo": None,
    "bench": None,
    "keys": {"create", "list", "revoke"},
    "workflows": {"publish"},
    "runs": {"submit", "show", "fork"},
    "events": {"tail"},
    "schemas": {"export"},
    "replay": {"projections", "dump"},
    "secrets": {"set", "list", "delete"},
    "limits": {"show", "set"},
    "worker": None,
    "hooks": {"create", "list", "delete"},
    "schedules": {"create", "list", "show", "pause", "resume", "delete"},
}


def _surface() -> dict[str, set[str] | None]:
    command = typer.main.get_command(app)
    out: dict[str, set[str] | None] = {}
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        out[name] = set(sub.commands) if hasattr(sub, "commands") else None
    return out


def test_the_command_tree_is_the_documented_one() -> None:
    assert _surface() == EXPECTED


def test_errors_are_one_line_without_a_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AOB_API_KEY"}
    argv = [sys.executable, "-c", "from cli.main import app; app()", "runs", "submit", "x"]
    result = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().startswith("error: no API key")
    assert "aob keys create" in result.stderr


def test_status_json_has_the_documented_keys() -> None:
    import json

    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in (
        "command_api_url",
        "query_api_url",
        "kafka_bootstrap",
        "postgres_dsn",
        "minio_endpoint",
        "console_url",
        "components",
    ):
        assert key in data
    names = {c["name"] for c in data["components"]}
    assert {
        "kafka",
        "postgres",
        "minio",
        "coordinator",
        "workers",
        "projections",
        "command_api",
        "query_api",
    } <= names
    assert all({"name", "running", "pid"} <= set(c) for c in data["components"])
