"""``aob bench``: the benchmark (DESIGN.md, Measuring), printed as JSON with --json.

It drives the running system through its public door, like a user: N runs of a workflow
submitted to the REST API by a fresh tenant of its own. A burst submits them all (``--concurrency``
in flight) and measures throughput; ``--rate R`` submits R runs a second, evenly spaced, and
measures latency at a load the stack keeps up with (a fraction of its burst throughput);
``--serial`` submits one, waits for it to finish, then the next, and measures unloaded
latency; ``--submit-only`` submits a burst and waits for nothing: the command API's
submissions a second (stop the rest of the stack's services to measure it alone; this mode
starts nothing). Waiting and the readings afterwards go straight to
the read model in PostgreSQL, so that watching costs the stack nothing while it is measured;
what is read is listed in :mod:`cli.bench_readings`.

Its tenant's limits are raised first (``bench_limits``), written to the same table an admin's
``PUT /v1/limits`` writes, so that the command API admits every run, still checking each one
as it checks any tenant's; the JSON says so (``limits``). The operator's global limit
(``AOB_COMMAND_API_GLOBAL_SUBMISSIONS_PER_MINUTE``), when set, still applies.

The shapes (``--shape chain3|fanout10|FILE``) are those of the Temporal peer harness, so the
figures can be set beside its activities/s from the same sitting.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import Progress

from auth import issue_key
from cli import CLIError
from cli.api_client import ApiClient
from cli.bench_readings import (
    cpu_used,
    finished_count,
    projection_lags,
    run_latencies_ms,
    run_status,
    runs_of,
    step_latencies,
    summary,
    tree_cpu_seconds,
    tree_resident_mb,
)
from cli.bench_shapes import Shape, load_shape
from cli.bench_submitter import Submitter
from infra.settings import Settings
from infra.stack import Stack
from limits.admission import unthrottled
from limits.execution import ANY_TYPE, MAX_CONCURRENCY, ExecutionLimits
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from run_model import RUN_FINISHED

console = Console(stderr=True)
# How long after the last run the memory is read: past the coordinator's release of freed
# memory (AOB_COORDINATOR_RELEASE_MEMORY_AFTER_S, 2 s, checked by its 0.25 s timer).
SETTLE_S = 3.0


async def _stack_pids(stack: Stack) -> dict[str, int]:
    return {c.name: c.pid for c in await stack.components() if c.running and c.pid}


async def _submit_burst(api: Submitter, plan: Plan, progress: Progress) -> list[str]:
    """Submit every run, ``plan.concurrency`` in flight; paced at ``plan.rate`` a second if
    set (the i-th is sent no earlier than i / rate seconds after the first)."""
    gate = asyncio.Semaphore(plan.concurrency)
    run_ids: list[str] = []
    task = progress.add_task("submitting runs", total=plan.runs)
    loop = asyncio.get_running_loop()
    first = loop.time()

    async def submit(i: int) -> None:
        if plan.rate is not None:
            await asyncio.sleep(max(0.0, first + i / plan.rate - loop.time()))
        async with gate:
            body = {"workflow_id": plan.shape.name, "input": {"i": i}}
            run_ids.append(await api.submit(body))
        progress.advance(task)

    await asyncio.gather(*(submit(i) for i in range(plan.runs)))
    return run_ids


async def _wait_all(
    conn: asyncpg.Connection, tenant: str, runs: int, deadline: float, progress: Progress
) -> int:
    task = progress.add_task("waiting for runs to finish", total=runs)
    while True:
        done = await finished_count(conn, tenant)
        progress.update(task, completed=done)
        if done >= runs or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.1)


async def _serial(
    api: Submitter, conn: asyncpg.Connection, plan: Plan, deadline: float, progress: Progress
) -> list[str]:
    task = progress.add_task("runs, one at a time", total=plan.runs)
    run_ids: list[str] = []
    for i in range(plan.runs):
        body = {"workflow_id": plan.shape.name, "input": {"i": i}}
        run_id = await api.submit(body)
        run_ids.append(run_id)
        while await run_status(conn, run_id) not in RUN_FINISHED:
            if time.monotonic() > deadline:
                return run_ids
            await asyncio.sleep(0.002)
        progress.advance(task)
    return run_ids


@dataclass(frozen=True)
class Plan:
    """What to measure: ``runs`` runs of ``shape``, in a burst, paced at ``rate`` runs a
    second, or one at a time."""

    shape: Shape
    runs: int
    concurrency: int = 16
    timeout: float = 600.0
    serial: bool = False
    rate: float | None = None
    submit_only: bool = False

    @property
    def mode(self) -> str:
        if self.submit_only:
            return "submit-only"
        return "serial" if self.serial else "paced" if self.rate is not None else "burst"


@dataclass(frozen=True)
class Readings:
    """What was measured, before it is summed up."""

    rows: list[Any]
    steps: list[float]
    lags: list[float] | str
    cpu: dict[str, float]
    submit_s: float
    wall_s: float
    limits: str = "the defaults"  # what the bench tenant's limits were
    throttled: int = 0  # submissions answered 429 and sent again after its Retry-After
    # Resident MB of each component before the first submission and once settled after.
    memory_before: dict[str, float] = field(default_factory=dict)
    memory_after: dict[str, float] = field(default_factory=dict)


def bench_limits() -> TenantLimits:
    """The bench tenant's limits: admission and its slots per worker process raised out of
    reach (the bench measures the engine, not the limits); budgets stay the defaults."""
    return TenantLimits(
        admission=unthrottled(), execution=ExecutionLimits(concurrency={ANY_TYPE: MAX_CONCURRENCY})
    )


async def raise_limits(conn: asyncpg.Connection, tenant: str) -> str:
    """Give ``tenant`` the bench's limits; what the JSON says of them."""
    store = LimitsStore(conn)
    await store.ensure_schema()
    await store.put(tenant, bench_limits())
    return f"raised for the bench tenant {tenant}"


async def _bench(settings: Settings, plan: Plan) -> dict[str, Any]:
    stack = Stack(settings)
    if not plan.submit_only:  # which services run is the caller's choice there
        await stack.up()
    tenant = f"bench-{secrets.token_hex(4)}"
    key = await issue_key(settings.postgres_dsn, tenant)
    pids = await _stack_pids(stack)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        limits = await raise_limits(conn, tenant)
        async with ApiClient(settings, key) as client:
            workflow = {"name": plan.shape.name, "definition": plan.shape.definition}
            await client.command("/v1/workflows", workflow, 201)
        async with Submitter(settings.command_api_url, key, plan.concurrency) as api:
            with Progress(console=console, transient=True) as progress:
                memory_before = tree_resident_mb(pids)
                cpu_before = tree_cpu_seconds(pids)
                started = time.monotonic()
                deadline = started + plan.timeout
                if plan.serial:
                    run_ids = await _serial(api, conn, plan, deadline, progress)
                    submitted = time.monotonic()
                elif plan.submit_only:
                    run_ids = await _submit_burst(api, plan, progress)
                    submitted = time.monotonic()
                else:
                    run_ids = await _submit_burst(api, plan, progress)
                    submitted = time.monotonic()
                    await _wait_all(conn, tenant, len(run_ids), deadline, progress)
                finished = time.monotonic()
                cpu = cpu_used(cpu_before, tree_cpu_seconds(pids))
                throttled = api.throttled
                await asyncio.sleep(SETTLE_S)
                memory_after = tree_resident_mb(pids)
        if plan.submit_only:
            return submissions_of(plan, cpu, submitted - started, throttled)
        readings = Readings(
            rows=await runs_of(conn, run_ids),
            steps=await step_latencies(conn, run_ids),
            lags=await projection_lags(conn, run_ids),
            cpu=cpu,
            submit_s=submitted - started,
            wall_s=finished - started,
            limits=limits,
            throttled=throttled,
            memory_before=memory_before,
            memory_after=memory_after,
        )
    finally:
        await conn.close()
    return result_of(plan, readings)


def submissions_of(
    plan: Plan, cpu: dict[str, float], submit_s: float, throttled: int = 0
) -> dict[str, Any]:
    """The JSON of ``--submit-only``: how fast the command API took the burst, and the CPU
    each running component spent meanwhile."""
    stack_cpu = round(sum(cpu.values()), 3)
    return {
        "shape": plan.shape.name,
        "workflow": plan.shape.name,
        "mode": plan.mode,
        "runs_submitted": plan.runs,
        "submit_concurrency": plan.concurrency,
        "submissions_throttled": throttled,
        "command_api_requests_per_s": round(plan.runs / submit_s, 1) if submit_s > 0 else None,
        "submit_s": round(submit_s, 3),
        "cpu": {
            "stack_s": stack_cpu,
            "per_submission_ms": round(stack_cpu * 1000 / plan.runs, 3),
            "components_s": cpu,
        },
    }


def result_of(plan: Plan, readings: Readings) -> dict[str, Any]:
    """The JSON that ``aob bench`` prints."""
    shape, rows, cpu = plan.shape, readings.rows, readings.cpu
    completed = [r for r in rows if r["status"] == "COMPLETED"]
    finished = [r for r in rows if r["status"] in RUN_FINISHED]
    # End to end on the writers' clocks: the first submission to the last completion.
    first = min((r["created_at"] for r in rows), default=None)
    last = max((r["finished_at"] for r in completed if r["finished_at"]), default=None)
    span = (last - first).total_seconds() if first and last else readings.wall_s
    executions = len(completed) * shape.nodes_per_run
    stack_cpu = round(sum(cpu.values()), 3)
    return {
        "shape": shape.name,
        "workflow": shape.name,
        "mode": plan.mode,
        "rate_per_s": plan.rate,
        "nodes_per_run": shape.nodes_per_run,
        "runs_submitted": plan.runs,
        "runs_completed": len(completed),
        "runs_unfinished": plan.runs - len(finished),
        "submit_concurrency": 1 if plan.serial else plan.concurrency,
        "limits": readings.limits,
        "submissions_throttled": readings.throttled,
        "command_api_requests_per_s": round(plan.runs / readings.submit_s, 1)
        if readings.submit_s > 0
        else None,
        "runs_per_s": round(len(completed) / span, 1) if span > 0 else None,
        "node_executions_per_s": round(executions / span, 1) if span > 0 else None,
        "end_to_end_s": round(span, 3),
        "run_latency_ms": summary(run_latencies_ms(rows)),
        "coordinator_step_latency_ms": summary(readings.steps),
        "projection_lag_ms": summary(readings.lags)
        if isinstance(readings.lags, list)
        else {"unavailable": readings.lags},
        "cpu": {
            "stack_s": stack_cpu,
            "per_node_execution_ms": round(stack_cpu * 1000 / executions, 2)
            if executions
            else None,
            "components_s": cpu,
        },
        "resident_memory_mb": {
            "before": readings.memory_before,
            "after": readings.memory_after,
            "settled_s": SETTLE_S,
        },
    }


def bench(  # noqa: PLR0917 - typer passes its options by keyword
    runs: int = typer.Option(200, min=1, max=100_000, help="How many runs to submit."),
    shape: str = typer.Option(
        "fanout10", help="chain3 (a→b→c), fanout10 (1→8→1), both no-op nodes, or a workflow FILE."
    ),
    serial: bool = typer.Option(
        False, "--serial", help="One run at a time, each waited for: unloaded latency."
    ),
    rate: float | None = typer.Option(
        None,
        min=0.01,
        help="Submit this many runs a second, evenly spaced (at most --concurrency in flight): "
        "latency under a steady load.",
    ),
    submit_only: bool = typer.Option(
        False,
        "--submit-only",
        help="Submit the burst and wait for no run: the command API's submissions a second "
        "(starts nothing; stop the other services to measure it alone).",
    ),
    concurrency: int = typer.Option(16, min=1, max=256, help="Submissions in flight at once."),
    timeout: float = typer.Option(600.0, help="Seconds to wait for every run to finish."),
    as_json: bool = typer.Option(False, "--json", help="Print only the JSON result."),
) -> None:
    """Measure the running system end to end (starts what is missing)."""
    chosen = load_shape(shape)
    if serial and rate is not None:
        raise typer.BadParameter("--serial runs one at a time: give it or --rate, not both")
    if submit_only and (serial or rate is not None):
        raise typer.BadParameter("--submit-only submits a burst: not with --serial or --rate")
    try:
        plan = Plan(chosen, runs, concurrency, timeout, serial, rate, submit_only)
        result = asyncio.run(_bench(Settings(), plan))
    except (OSError, asyncpg.PostgresError) as e:
        raise CLIError(f"the stack is not reachable ({e}); run `aob up`") from e
    if as_json:
        typer.echo(json.dumps(result))
    else:
        Console().print_json(json.dumps(result))
    if submit_only:
        return
    if result["runs_unfinished"] or result["runs_completed"] != result["runs_submitted"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(bench)
