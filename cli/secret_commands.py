"""``aob secrets set|list|delete``: a tenant's secrets, managed by the operator.

Like ``aob keys create``, these talk to PostgreSQL directly (an operator's commands, run where
the stack's settings are) and seal with the deployment's key (``AOB_SECRETS_KEY`` or the key
file under the stack's home): the same key the command API and the workers use. A key with
the ``admin`` scope does the same over REST (``/v1/secrets``).

The value is read from stdin, never from the command line, where ``ps`` and the shell's
history would show it; at a terminal it is asked for without echo. One trailing newline is
dropped (``echo`` adds one).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cli import CLIError
from infra.settings import Settings
from secret_store import SecretStore, SecretStoreError, cipher_from_settings

T = TypeVar("T")
console = Console()
secrets_app = typer.Typer(
    help="A tenant's secrets, read by templates as {{ secrets.NAME }} (values are never shown)."
)
TENANT = typer.Option(..., "--tenant", help="The tenant whose secrets these are.")


@asynccontextmanager
async def open_store() -> AsyncIterator[SecretStore]:
    """The store in the stack's PostgreSQL, its table made if need be."""
    import asyncpg

    settings = Settings()
    cipher = cipher_from_settings(settings)
    try:
        conn = await asyncpg.connect(settings.postgres_dsn)
    except (OSError, asyncpg.PostgresError) as e:
        raise CLIError(f"PostgreSQL is not reachable ({e}); run `aob up`") from e
    try:
        store = SecretStore(conn, cipher)
        await store.ensure_schema()
        yield store
    finally:
        await conn.close()


def _with_store(action: Callable[[SecretStore], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_store() as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except SecretStoreError as e:  # a name or value refused, a key missing: the user's to fix
        raise CLIError(str(e)) from None


def read_value() -> str:
    """The value from stdin (without echo at a terminal), less one trailing newline."""
    if sys.stdin.isatty():
        return getpass.getpass("value (not shown): ")
    value = sys.stdin.read()
    if value.endswith("\n"):
        value = value[:-1]
        if value.endswith("\r"):
            value = value[:-1]
    return value


@secrets_app.command("set")
def secrets_set(
    name: str = typer.Argument(..., help="Letters, digits and '_'; read as secrets.NAME."),
    tenant: str = TENANT,
) -> None:
    """Set (or replace) secret NAME of TENANT; the value is read from stdin."""
    value = read_value()
    _with_store(lambda store: store.put(tenant, name, value))
    console.print(f"secret {name!r} of tenant {tenant!r} is set", highlight=False)


@secrets_app.command("list")
def secrets_list(tenant: str = TENANT) -> None:
    """List the names of TENANT's secrets, with when they were set (never their values)."""
    infos = _with_store(lambda store: store.list(tenant))
    table = Table("name", "created", "updated")
    for info in infos:
        table.add_row(info.name, info.created_at.isoformat(), info.updated_at.isoformat())
    console.print(table)


@secrets_app.command("delete")
def secrets_delete(name: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Delete secret NAME of TENANT (runs that read it then fail, naming it)."""
    _with_store(lambda store: store.delete(tenant, name))
    console.print(f"secret {name!r} of tenant {tenant!r} is deleted", highlight=False)


def register(app: Any) -> None:
    app.add_typer(secrets_app, name="secrets")
