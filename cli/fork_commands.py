"""``aob runs fork``: a new run from another run's history up to a point.

Registered after ``client_commands`` (modules register in name order), into its ``runs``
group.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from cli.client_commands import _load_json, console, print_finished, runs_app, start_run


def runs_fork(
    run_id: str = typer.Argument(..., metavar="RUN", help="The run to fork."),
    at: str = typer.Option(
        ...,
        "--at",
        help="The last event of RUN the fork includes: a seq (as in `aob runs show`) or a "
        "log position `topic:partition:offset`.",
    ),
    input_json: str | None = typer.Option(
        None, "--input", help="The fork's input, as JSON (default: RUN's)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for the fork to finish and show it."),
    timeout: float = typer.Option(300.0, help="Seconds --wait waits at most."),
) -> None:
    """Fork RUN at a point of its history: what had finished there is reused (never run
    again), the rest runs in a new run; RUN is left as it is. Prints the new run's id."""
    body: dict[str, Any] = {"at": at}
    if input_json is not None:
        body["input"] = _load_json(input_json, "--input")

    answer, run = asyncio.run(start_run(f"/v1/runs/{run_id}/forks", body, wait, timeout))
    where = f"forked from {answer['forked_from']} at event {answer['at_seq']} ({answer['at']})"
    if run is None:
        typer.echo(answer["run_id"])
        console.print(f"[dim]{where}[/]", highlight=False, soft_wrap=True)
        return
    print_finished(run, f", {where}")


def register(app: typer.Typer) -> None:
    runs_app.command("fork")(runs_fork)
