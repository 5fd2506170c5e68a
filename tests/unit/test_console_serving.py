"""The console's bundle as the query API serves it, and the command API's CORS for it:
files from the built folder, the page's own routes answered with index.html, no way out of
the folder, a clear 503 before `make setup` has built it, and preflights that let the
console's origin (and only it) call the command API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from command_api.cors import allow_console, console_origins
from infra.settings import Settings
from query_api.console import mount_console

COMMANDS = "http://127.0.0.1:18080"


def _console(dist: Path, command_api_url: str | None = COMMANDS) -> TestClient:
    app = FastAPI()
    mount_console(app, dist, command_api_url, 18080)
    return TestClient(app)


@pytest.fixture
def built(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=root></div>")
    (dist / "assets" / "index-abc.js").write_text("console.log('aob')")
    (tmp_path / "secret.txt").write_text("not for the browser")
    return dist


def test_files_and_the_pages_own_routes_are_served(built: Path) -> None:
    client = _console(built)
    for path in ("/console", "/console/", "/console/runs/r-1", "/console/workflows/x"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "id=root" in r.text
    asset = client.get("/console/assets/index-abc.js")
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert client.get("/console/assets/missing.js").status_code == 404


def test_nothing_outside_the_bundle_is_served(built: Path) -> None:
    client = _console(built)
    for path in (
        "/console/../secret.txt",
        "/console/%2e%2e/secret.txt",
        "/console/..%2fsecret.txt",
    ):
        r = client.get(path)
        assert "not for the browser" not in r.text, path


def test_config_tells_the_page_where_the_command_api_is(built: Path) -> None:
    r = _console(built).get("/console/config.json")
    assert r.json() == {"commandApiUrl": COMMANDS, "graphqlPath": "/graphql"}
    # Unset: the host the browser loaded the page from, with the command API's port.
    derived = _console(built, None).get(
        "/console/config.json", headers={"host": "aob.internal:18081"}
    )
    assert derived.json()["commandApiUrl"] == "http://aob.internal:18080"


def test_without_a_build_the_console_says_how_to_build_it(tmp_path: Path) -> None:
    r = _console(tmp_path / "dist").get("/console/runs/r-1")
    assert r.status_code == 503
    assert "make setup" in r.text


def test_the_command_api_allows_the_query_apis_origin_by_default() -> None:
    settings = Settings(query_api_port=18181)
    assert console_origins(settings, None) == ["http://127.0.0.1:18181", "http://localhost:18181"]
    assert console_origins(settings, " https://ops.example/ ,http://a:1") == [
        "https://ops.example",
        "http://a:1",
    ]
    assert console_origins(settings, "") == []


def _commands(configured: str | None) -> TestClient:
    app = FastAPI()

    @app.post("/v1/runs")
    async def submit() -> dict[str, str]:
        return {"run_id": "r"}

    allow_console(app, Settings(query_api_port=18181), configured)
    return TestClient(app)


def _preflight(client: TestClient, origin: str) -> dict[str, str]:
    r = client.options(
        "/v1/runs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    return dict(r.headers)


def test_a_preflight_from_the_console_is_allowed_and_one_from_elsewhere_is_not() -> None:
    client = _commands(None)
    allowed = _preflight(client, "http://127.0.0.1:18181")
    assert allowed["access-control-allow-origin"] == "http://127.0.0.1:18181"
    assert "Authorization" in allowed["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in allowed
    assert "access-control-allow-origin" not in _preflight(client, "http://evil.example")
    # Empty: no origin at all.
    assert "access-control-allow-origin" not in _preflight(_commands(""), "http://127.0.0.1:18181")
