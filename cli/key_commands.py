"""``aob keys create|list|revoke``: an operator's tool on the deployment.

These talk to PostgreSQL directly (``AOB_POSTGRES_DSN``), not to the API: a tenant's first
key cannot be asked for with a key. Once a tenant has a key with the ``admin`` scope, it can
do the same over REST (``/v1/keys``), for its own tenant only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from auth import SCOPES, KeyInfo, create_key, ensure_schema, list_keys, parse_scopes, revoke_key
from auth.api_keys import check_name, check_tenant
from cli import CLIError
from infra.settings import Settings

console = Console()
# Hints go to stderr, so that `KEY=$(aob keys create ...)` captures the key alone.
hints = Console(stderr=True)
keys_app = typer.Typer(help="API keys (one tenant each, with scopes; only hashes are stored).")

T = TypeVar("T")

SCOPE_HELP = f"A scope the key gets ({', '.join(SCOPES)}); repeat it for more."


def given_scopes(scope: list[str] | None, scopes: str | None) -> list[str] | None:
    """The scopes of ``--scope`` (repeated) and ``--scopes`` (comma-separated) together;
    None if neither was given (the key then gets the default ones)."""
    named = [*(scope or []), *([scopes] if scopes is not None else [])]
    return named or None


def _on_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a connection to the deployment's PostgreSQL, the key table made sure
    of; a tenant, name or scope we do not accept, or no database, is one line of error."""

    async def run() -> T:
        try:
            conn = await asyncpg.connect(Settings().postgres_dsn)
        except (OSError, asyncpg.PostgresError) as e:
            raise CLIError(f"PostgreSQL is not reachable ({e}); run `aob up`") from e
        try:
            await ensure_schema(conn)
            return await work(conn)
        except ValueError as e:  # a tenant, a name or a scope we do not accept
            raise CLIError(str(e)) from e
        except (OSError, asyncpg.PostgresError) as e:
            raise CLIError(f"PostgreSQL failed ({e})") from e
        finally:
            await conn.close()

    return asyncio.run(run())


@keys_app.command("create")
def keys_create(
    tenant: str = typer.Option(..., "--tenant", help="The tenant the key acts for."),
    scope: list[str] | None = typer.Option(None, "--scope", help=SCOPE_HELP),  # noqa: B008
    scopes: str | None = typer.Option(
        None, "--scopes", help="Scopes, comma-separated (read,submit); with --scope: both."
    ),
    name: str | None = typer.Option(None, "--name", help="A label, shown by `aob keys list`."),
) -> None:
    """Print a new API key for TENANT, shown once (only its hash is stored).

    Without --scope or --scopes it has every scope but admin.
    """
    wanted = given_scopes(scope, scopes)
    try:  # told before any connection is tried
        check_tenant(tenant)
        check_name(name)
        parse_scopes(wanted)
    except ValueError as e:
        raise CLIError(str(e)) from e
    made = _on_database(lambda conn: create_key(conn, tenant, wanted, name))
    typer.echo(made.key)
    hints.print(
        f"[dim]Key {made.info.key_id}, scopes {','.join(made.info.scopes)}. Shown once; only "
        f"its hash is stored. Use it with:[/]\nexport AOB_API_KEY={made.key}",
        highlight=False,
        soft_wrap=True,
    )


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""


def keys_table(keys: list[KeyInfo]) -> Table:
    table = Table("key id", "name", "scopes", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            k.key_id,
            k.name or "",
            ",".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
    return table


@keys_app.command("list")
def keys_list(
    tenant: str = typer.Option(..., "--tenant", help="The tenant whose keys to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List TENANT's keys, revoked ones too (never a secret or a hash).

    A key's last use is recorded about once a minute.
    """
    keys = _on_database(lambda conn: list_keys(conn, tenant))
    if as_json:
        typer.echo(json.dumps([k.as_json() for k in keys], indent=2))
        return
    console.print(keys_table(keys))


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., metavar="KEY_ID", help="The key's id (aob_<id>_…)."),
) -> None:
    """Revoke KEY_ID: every API refuses it within a second."""
    revoked: KeyInfo | None = _on_database(lambda conn: revoke_key(conn, key_id))
    if revoked is None:
        raise CLIError(f"no key {key_id!r}; `aob keys list --tenant NAME` shows the ids")
    typer.echo(f"revoked key {revoked.key_id} of tenant {revoked.tenant}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
