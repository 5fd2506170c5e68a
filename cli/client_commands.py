"""``aob workflows`` and ``aob runs``: thin clients of the APIs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli import CLIError
from cli.api_client import ApiClient, api_key_from_env
from cli.history import show_at
from cli.patch_tables import rejected_table, short, versions_table
from cli.timeline import nodes_table, timeline_table
from infra.settings import Settings

console = Console()
workflows_app = typer.Typer(help="Publish workflow definitions.")
runs_app = typer.Typer(help="Submit and inspect runs.")


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"{what} is not valid JSON: {e}") from e


@workflows_app.command("publish")
def workflows_publish(
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="Definition JSON, or {name, definition}."),
    ],
    name: str | None = typer.Option(
        None, help="Workflow name (default: the file's name or its `name`)."
    ),
) -> None:
    """Publish a workflow definition; prints its id and version."""
    doc = _load_json(file.read_text(), str(file))
    if isinstance(doc, dict) and "definition" in doc:
        body = {"name": name or doc.get("name") or file.stem, "definition": doc["definition"]}
    else:
        body = {"name": name or file.stem, "definition": doc}

    async def publish() -> dict[str, Any]:
        async with ApiClient(Settings(), api_key_from_env()) as api:
            return await api.command("/v1/workflows", body, 201)

    answer = asyncio.run(publish())
    typer.echo(json.dumps({"name": body["name"], **answer}, indent=2))


@runs_app.command("submit")
def runs_submit(
    workflow: str = typer.Argument(..., help="Workflow id or name."),
    input_json: str | None = typer.Option(None, "--input", help="The run input, as JSON."),
    version: str | None = typer.Option(None, help="A published version (default: the latest)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish and show it."),
    timeout: float = typer.Option(300.0, help="Seconds --wait waits at most."),
) -> None:
    """Submit a run of WORKFLOW; with --wait, follow it to the end."""
    body: dict[str, Any] = {"workflow_id": workflow}
    if input_json is not None:
        body["input"] = _load_json(input_json, "--input")
    if version:
        body["version"] = version

    answer, run = asyncio.run(start_run("/v1/runs", body, wait, timeout))
    if run is None:
        typer.echo(json.dumps(answer, indent=2))
        return
    print_finished(run)


async def start_run(
    path: str, body: dict[str, Any], wait: bool, timeout: float
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """POST a command that starts a run (a submission, a fork): its answer, and with
    ``wait`` the run once it has finished, followed with a progress line meanwhile."""
    async with ApiClient(Settings(), api_key_from_env()) as api:
        answer = await api.command(path, body, 202)
        if not wait:
            return answer, None
        with console.status("waiting for the run…") as status:

            def show(run: dict[str, Any]) -> None:
                done = sum(n["status"] in {"SUCCEEDED", "SKIPPED"} for n in run["nodes"])
                status.update(f"run {run['status']}: {done}/{len(run['nodes'])} nodes finished")

            run = await api.wait_for_run(answer["run_id"], answer["position"], timeout, show)
        return answer, run


def print_finished(run: dict[str, Any], note: str = "") -> None:
    """A finished run's timeline, nodes and outcome; exit 1 unless it COMPLETED."""
    console.print(timeline_table(run))
    console.print(nodes_table(run))
    console.print(
        f"run {run['id']} {run['status']}{note}; output {json.dumps(run['output'])}",
        highlight=False,
        soft_wrap=True,
    )
    if run["status"] != "COMPLETED":
        raise typer.Exit(1)


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., metavar="RUN", help="The run id."),
    at: str | None = typer.Option(
        None,
        "--at",
        metavar="POSITION",
        help="Show the run as it was at that point of its history, folded from the log: "
        "a seq (7: after its 7th event) or a log position (aob.runs.events:3:1042).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show RUN as the read side has it: nodes, chain of versions, rejected patches, timeline.
    With --at, as it was at that point: its events up to there, folded by the coordinator's
    own evolve function."""
    if at is not None:
        show_at(run_id, at, as_json)
        return

    async def fetch() -> dict[str, Any]:
        async with ApiClient(Settings(), api_key_from_env()) as api:
            return await api.run(run_id)

    run = asyncio.run(fetch())
    if as_json:
        typer.echo(json.dumps(run, indent=2))
        return
    console.print(timeline_table(run))
    console.print(nodes_table(run))
    console.print(versions_table(run))
    refused = rejected_table(run)
    if refused is not None:
        console.print(refused)
    where = f" ({run['error']})" if run.get("error") else ""
    parent = run.get("parent")
    started_by = (
        f", started by node {run.get('parentNodeId')!r} of run {parent['id']}" if parent else ""
    )
    console.print(
        f"run {run['id']} of {run['workflowName']} at version {short(run['version'])}: "
        f"{run['status']}{where}{started_by}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(workflows_app, name="workflows")
    app.add_typer(runs_app, name="runs")
