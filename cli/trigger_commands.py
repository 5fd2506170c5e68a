"""``aob hooks create|list|delete``: webhooks that start runs of a workflow, over REST
(``/v1/hooks``, a key with the ``publish`` scope: ``AOB_API_KEY``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from cli import CLIError
from cli.api_client import ApiClient, api_key_from_env, problem_detail
from infra.settings import Settings

hooks_app = typer.Typer(
    help="Webhooks: a signed POST to /v1/hooks/ID starts a run of the hook's workflow."
)


async def _call(method: str, path: str, body: dict[str, Any] | None, expect: int) -> Any:
    async with ApiClient(Settings(), api_key_from_env()) as api:
        if expect != 204:
            return await api.call(method, path, body, expect)
        response = await api.rest.request(method, path)
        if response.status_code != 204:
            raise CLIError(problem_detail(response))
        return None


@hooks_app.command("create")
def hooks_create(workflow: str = typer.Argument(..., help="Workflow id or name.")) -> None:
    """Make a hook for WORKFLOW; prints its id, URL and secret (shown this once only)."""
    answer = asyncio.run(_call("POST", "/v1/hooks", {"workflow": workflow}, 201))
    typer.echo(json.dumps(answer, indent=2))
    typer.echo(
        "keep the secret: it is not shown again. Sign each delivery with it: "
        'X-AOB-Signature: sha256=HMAC-SHA256("<X-AOB-Timestamp>.<body>")',
        err=True,
    )


@hooks_app.command("list")
def hooks_list() -> None:
    """List the tenant's hooks (never their secrets)."""
    answer = asyncio.run(_call("GET", "/v1/hooks", None, 200))
    typer.echo(json.dumps(answer["hooks"], indent=2))


@hooks_app.command("delete")
def hooks_delete(hook_id: str = typer.Argument(...)) -> None:
    """Delete a hook: deliveries to it are refused from now on."""
    asyncio.run(_call("DELETE", f"/v1/hooks/{hook_id}", None, 204))
    typer.echo(f"deleted hook {hook_id}")


def register(app: Any) -> None:
    app.add_typer(hooks_app, name="hooks")
