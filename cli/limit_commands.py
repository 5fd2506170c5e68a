"""``aob limits show|set FILE``: the limits of the tenant of ``AOB_API_KEY``, over REST.

``show`` prints the document in effect (``GET /v1/limits``, the ``read`` scope), so that
``aob limits show > limits.json``, an edit, and ``aob limits set limits.json`` (``PUT
/v1/limits``, the ``admin`` scope) change what is wanted and keep the rest. The server
validates the document and refuses it whole, every reason listed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer

from cli import CLIError
from cli.api_client import ApiClient, api_key_from_env
from infra.settings import Settings

limits_app = typer.Typer(
    help="The limits of your API key's tenant: runs a minute by cost tier, forks, patches, "
    "approvals, fair execution, agent budgets."
)


def _call(method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async def call() -> dict[str, Any]:
        async with ApiClient(Settings(), api_key_from_env()) as api:
            return await api.call(method, "/v1/limits", body)

    return asyncio.run(call())


def read_document(file: str) -> dict[str, Any]:
    """The JSON object in FILE (``-``: stdin)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as e:
        raise CLIError(f"cannot read {file}: {e.strerror or e}") from None
    try:
        document = json.loads(text)
    except ValueError as e:
        raise CLIError(f"{file} is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise CLIError(f"{file}: a limits document is a JSON object")
    return document


@limits_app.command("show")
def limits_show() -> None:
    """Print the limits in effect for your tenant (the defaults if it set none), as JSON."""
    typer.echo(json.dumps(_call("GET"), indent=2))


@limits_app.command("set")
def limits_set(
    file: str = typer.Argument(..., help="A JSON limits document (as `show` prints); - : stdin"),
) -> None:
    """Replace your tenant's limits with FILE's (needs a key with the admin scope); a field
    left out takes its default."""
    stored = _call("PUT", read_document(file))
    typer.echo(json.dumps(stored, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(limits_app, name="limits")
