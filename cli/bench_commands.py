"""``aob bench``: the benchmark (DESIGN.md, Measuring), printed as JSON with --json.

It drives the running system through its public doors, like a user: N runs of the example
fan-out/fan-in workflow submitted to the REST API, then watched on the read side. It reports
what a user feels — command API requests per second, runs and node executions per second
end to end — and, from the run histories, the coordinator's per-step latency (the time from
a worker's NodeSucceeded to the decisions it caused, both stamped by their writers).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress

from auth import issue_key
from cli.api_client import ApiClient
from cli.demo_commands import DEMO_TENANT
from infra.settings import Settings
from infra.stack import Stack

console = Console(stderr=True)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fan_out_fan_in.json"

EVENTS_QUERY = """
query BenchRun($id: ID!) {
  run(id: $id) {
    status createdAt finishedAt
    events(first: 200) { edges { node { id type occurredAt causationId } } }
  }
}
"""


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _step_latencies(events: list[dict[str, Any]]) -> list[float]:
    """ms from each NodeSucceeded to the first decision it caused."""
    at = {e["id"]: datetime.fromisoformat(e["occurredAt"]) for e in events}
    kinds = {e["id"]: e["type"] for e in events}
    first_effect: dict[str, datetime] = {}
    for e in events:
        cause = e.get("causationId")
        if (
            cause in kinds
            and kinds[cause] == "run.node_succeeded"
            and e["type"] != "run.node_started"
        ):
            t = datetime.fromisoformat(e["occurredAt"])
            first_effect[cause] = min(first_effect.get(cause, t), t)
    return [(t - at[c]).total_seconds() * 1000 for c, t in first_effect.items()]


async def _bench(settings: Settings, runs: int, concurrency: int, timeout: float) -> dict[str, Any]:
    await Stack(settings).up()
    key = await issue_key(settings.postgres_dsn, DEMO_TENANT)
    example = json.loads(EXAMPLE.read_text())
    nodes_per_run = len(example["definition"]["nodes"])
    async with ApiClient(settings, key) as api:
        await api.command("/v1/workflows", example, 201)
        gate = asyncio.Semaphore(concurrency)
        run_ids: list[str] = []

        async def submit(i: int) -> None:
            async with gate:
                body = {
                    "workflow_id": example["name"],
                    "input": {"name": f"b{i}", "numbers": [i, 1]},
                }
                run_ids.append((await api.command("/v1/runs", body, 202))["run_id"])

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("submitting runs", total=runs)
            started = time.monotonic()

            async def tracked(i: int) -> None:
                await submit(i)
                progress.advance(task)

            await asyncio.gather(*(tracked(i) for i in range(runs)))
            submitted = time.monotonic()
            wait = progress.add_task("waiting for runs to finish", total=runs)
            details: dict[str, dict[str, Any]] = {}
            while len(details) < runs:
                if time.monotonic() - started > timeout:
                    break
                pending = [r for r in run_ids if r not in details]
                for run_id in pending[:100]:
                    run = (await api.query(EVENTS_QUERY, id=run_id))["run"]
                    if run and run["status"] in {"COMPLETED", "FAILED", "CANCELLED"}:
                        details[run_id] = run
                progress.update(wait, completed=len(details))
                if len(details) < runs:
                    await asyncio.sleep(0.2)
            finished = time.monotonic()

    completed = [r for r in details.values() if r["status"] == "COMPLETED"]
    # End to end on the writers' clocks: first submission to last completion.
    first = (
        min(datetime.fromisoformat(r["createdAt"]) for r in details.values()) if details else None
    )
    last = max(
        (datetime.fromisoformat(r["finishedAt"]) for r in completed if r["finishedAt"]),
        default=None,
    )
    span = (last - first).total_seconds() if first and last else finished - started
    latencies = [
        ms
        for r in details.values()
        for ms in _step_latencies([e["node"] for e in r["events"]["edges"]])
    ]
    return {
        "workflow": example["name"],
        "nodes_per_run": nodes_per_run,
        "runs_submitted": runs,
        "runs_completed": len(completed),
        "runs_unfinished": runs - len(details),
        "submit_concurrency": concurrency,
        "command_api_requests_per_s": round(runs / (submitted - started), 1),
        "runs_per_s": round(len(completed) / span, 1) if span > 0 else None,
        "node_executions_per_s": round(len(completed) * nodes_per_run / span, 1)
        if span > 0
        else None,
        "end_to_end_s": round(span, 3),
        "coordinator_step_latency_ms": {
            "p50": _percentile(latencies, 0.5),
            "p99": _percentile(latencies, 0.99),
            "mean": round(statistics.fmean(latencies), 2) if latencies else None,
            "samples": len(latencies),
        },
    }


def bench(
    runs: int = typer.Option(200, min=1, max=100_000, help="How many runs to submit."),
    concurrency: int = typer.Option(16, min=1, max=256, help="Submissions in flight at once."),
    timeout: float = typer.Option(600.0, help="Seconds to wait for every run to finish."),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
) -> None:
    """Measure the running system end to end (starts what is missing)."""
    result = asyncio.run(_bench(Settings(), runs, concurrency, timeout))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        Console().print_json(json.dumps(result))
    if result["runs_unfinished"] or result["runs_completed"] != result["runs_submitted"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(bench)
