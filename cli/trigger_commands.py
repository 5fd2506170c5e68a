"""``aob hooks create|list|delete`` and ``aob schedules create|list|show|pause|resume|delete``:
what starts runs besides ``aob runs submit``, over REST (``/v1/hooks``, ``/v1/schedules``; a
key with the ``publish`` scope in ``AOB_API_KEY``)."""

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


schedules_app = typer.Typer(
    help="Schedules: runs of a workflow started by the coordinator's clock (cron or interval)."
)


@schedules_app.command("create")
def schedules_create(  # noqa: PLR0917 - the command's options
    workflow: str = typer.Argument(..., help="Workflow id or name."),
    cron: str | None = typer.Option(None, "--cron", help='Five fields, e.g. "*/5 * * * *".'),
    every: str | None = typer.Option(None, "--every", help="Or an interval: 2s, 5m, 1h, 1d."),
    input_json: str | None = typer.Option(None, "--input", help="Each run's input, as JSON."),
    overlap: str = typer.Option(
        "allow", "--overlap", help="skip: no run while the previous one is unfinished."
    ),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone of the cron."),
) -> None:
    """Make a schedule of WORKFLOW (--cron or --every); prints it with its next moment."""
    body: dict[str, Any] = {"workflow": workflow, "overlap": overlap, "timezone": timezone}
    if cron is not None:
        body["cron"] = cron
    if every is not None:
        body["every"] = every
    if input_json is not None:
        try:
            body["input"] = json.loads(input_json)
        except json.JSONDecodeError as e:
            raise CLIError(f"--input is not valid JSON: {e}") from e
    typer.echo(json.dumps(asyncio.run(_call("POST", "/v1/schedules", body, 201)), indent=2))


@schedules_app.command("list")
def schedules_list() -> None:
    """List the tenant's schedules, with the last moment each fired."""
    answer = asyncio.run(_call("GET", "/v1/schedules", None, 200))
    typer.echo(json.dumps(answer["schedules"], indent=2))


@schedules_app.command("show")
def schedules_show(schedule_id: str = typer.Argument(...)) -> None:
    """A schedule and its latest moments: fired (with the run), skipped or missed."""
    typer.echo(
        json.dumps(asyncio.run(_call("GET", f"/v1/schedules/{schedule_id}", None, 200)), indent=2)
    )


@schedules_app.command("pause")
def schedules_pause(schedule_id: str = typer.Argument(...)) -> None:
    """Stop firing until resumed (the moments in between are not caught up)."""
    answer = asyncio.run(_call("POST", f"/v1/schedules/{schedule_id}/pause", None, 200))
    typer.echo(json.dumps(answer, indent=2))


@schedules_app.command("resume")
def schedules_resume(schedule_id: str = typer.Argument(...)) -> None:
    """Fire again, from the next moment on."""
    answer = asyncio.run(_call("POST", f"/v1/schedules/{schedule_id}/resume", None, 200))
    typer.echo(json.dumps(answer, indent=2))


@schedules_app.command("delete")
def schedules_delete(schedule_id: str = typer.Argument(...)) -> None:
    """Delete a schedule: it fires no more."""
    asyncio.run(_call("DELETE", f"/v1/schedules/{schedule_id}", None, 204))
    typer.echo(f"deleted schedule {schedule_id}")


def register(app: Any) -> None:
    app.add_typer(hooks_app, name="hooks")
    app.add_typer(schedules_app, name="schedules")
