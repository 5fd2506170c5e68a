"""``/v1/secrets`` and ``aob secrets`` over an in-memory table: the admin scope, what the
answers show (names and dates, never a value), refusals, and the value read from stdin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from auth import Principal
from cli import secret_commands
from cli.main import app as cli_app
from command_api import problems
from command_api.context import principal_of
from command_api.secret_routes import router
from secret_store import SecretCipher, SecretStore
from tests.secret_support import Table

VALUE = "tok-rest-5e1f"
ADMIN = Principal("acme", "k-admin", frozenset({"admin"}))
SUBMITTER = Principal("acme", "k-submit", frozenset({"submit"}))


def make(caller: Principal) -> tuple[TestClient, Table, SecretStore]:
    table = Table()
    store = SecretStore(table, SecretCipher([Fernet.generate_key()]))
    app = FastAPI()
    problems.install(app)
    app.include_router(router)
    app.state.commands = SimpleNamespace(secrets=store)
    app.dependency_overrides[principal_of] = lambda: caller
    return TestClient(app, raise_server_exceptions=False), table, store


def test_an_admin_sets_lists_and_deletes_and_no_answer_shows_a_value() -> None:
    client, table, _ = make(ADMIN)
    r = client.put("/v1/secrets/API_KEY", json={"value": VALUE})
    assert r.status_code == 204, r.text
    assert VALUE.encode() not in table.everything()
    listed = client.get("/v1/secrets")
    assert listed.status_code == 200
    [item] = listed.json()["secrets"]
    assert set(item) == {"name", "created_at", "updated_at"} and item["name"] == "API_KEY"
    assert VALUE not in listed.text
    assert client.delete("/v1/secrets/API_KEY").status_code == 204
    gone = client.delete("/v1/secrets/API_KEY")
    assert gone.status_code == 404 and "API_KEY" in gone.json()["detail"]


async def test_a_secret_set_over_rest_is_the_tenants_own() -> None:
    client, _, store = make(ADMIN)
    client.put("/v1/secrets/T", json={"value": VALUE})
    assert await store.values("acme", ["T"]) == {"T": VALUE}
    assert await store.list("globex") == []


@pytest.mark.parametrize(
    ("request_", "path"),
    [("put", "/v1/secrets/T"), ("get", "/v1/secrets"), ("delete", "/v1/secrets/T")],
)
def test_a_key_without_admin_gets_403_naming_the_scope(request_: str, path: str) -> None:
    client, table, _ = make(SUBMITTER)
    kwargs: dict[str, Any] = {"json": {"value": VALUE}} if request_ == "put" else {}
    r = getattr(client, request_)(path, **kwargs)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "this API key lacks the 'admin' scope"
    assert table.rows == {}


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/secrets/bad-name", {"value": VALUE}, "secret name"),
        ("/v1/secrets/T", {"value": ""}, "value"),
        ("/v1/secrets/T", {"value": "x" * (64 * 1024 + 1)}, "value"),
        ("/v1/secrets/T", {"value": VALUE, "extra": 1}, "extra"),
    ],
)
def test_bad_names_and_values_are_422_without_the_value(
    path: str, body: dict[str, Any], words: str
) -> None:
    client, table, _ = make(ADMIN)
    r = client.put(path, json=body)
    assert r.status_code == 422, r.text
    assert words in r.text
    assert VALUE not in r.text and "xxxxxxxxxx" not in r.text
    assert table.rows == {}


def test_the_cli_reads_the_value_from_stdin_and_shows_names_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = Table()
    store = SecretStore(table, SecretCipher([Fernet.generate_key()]))

    @asynccontextmanager
    async def open_store() -> AsyncIterator[SecretStore]:
        yield store

    monkeypatch.setattr(secret_commands, "open_store", open_store)
    runner = CliRunner()
    r = runner.invoke(
        cli_app, ["secrets", "set", "API_KEY", "--tenant", "acme"], input=VALUE + "\n"
    )
    assert r.exit_code == 0, r.output
    assert VALUE not in r.output
    assert VALUE.encode() not in table.everything()
    [row] = table.rows.values()
    assert store._cipher.open("acme", "API_KEY", row["sealed"]) == VALUE  # newline dropped

    r = runner.invoke(cli_app, ["secrets", "list", "--tenant", "acme"])
    assert r.exit_code == 0 and "API_KEY" in r.output and VALUE not in r.output

    r = runner.invoke(cli_app, ["secrets", "set", "bad-name", "--tenant", "acme"], input="v")
    assert r.exit_code == 1

    r = runner.invoke(cli_app, ["secrets", "delete", "API_KEY", "--tenant", "acme"])
    assert r.exit_code == 0 and table.rows == {}


def test_the_value_is_never_an_argument() -> None:
    r = CliRunner().invoke(cli_app, ["secrets", "set", "API_KEY", VALUE, "--tenant", "acme"])
    assert r.exit_code == 2  # a usage error: set takes the name only
    r = CliRunner().invoke(cli_app, ["secrets", "set", "API_KEY"])
    assert r.exit_code == 2 and "--tenant" in r.output
