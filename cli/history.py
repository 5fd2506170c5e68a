"""``aob runs show RUN --at POSITION`` and ``aob events tail``: the log read back.

Both read Kafka directly (the log is the source of truth; the read side may lag). ``runs
show --at`` and ``events tail --run`` first ask the query API for the run, so a key sees only
its tenant's runs (``runs show --at`` also learns when the run was created, so that only the
log from then on is read). ``events tail`` without ``--run`` is an operator's view of the
whole log: it needs Kafka, which only the deployment's operators reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Any

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from cli import CLIError
from cli.api_client import ApiClient, api_key_from_env
from cli.patch_tables import short
from cli.timeline import event_detail, nodes_table, timeline_table
from infra.run_log import RunLogError, read_run, until
from infra.settings import Settings
from replay.tail import LogTail, Tailed
from replay.time_travel import describe, state_at

console = Console()
hints = Console(stderr=True)
events_app = typer.Typer(help="The event log, read directly.")

RUN_CREATED = "query CliRunCreated($id: ID!) { run(id: $id) { id createdAt } }"


def _kafka_down(settings: Settings, e: Exception) -> CLIError:
    return CLIError(f"Kafka at {settings.kafka_bootstrap} is not reachable ({e}); run `aob up`")


async def _visible_run(settings: Settings, run_id: str) -> dict[str, Any]:
    """The run as the query API shows it to ``AOB_API_KEY``'s tenant; CLIError if it is not
    that tenant's (another tenant's run reads as one that does not exist)."""
    async with ApiClient(settings, api_key_from_env()) as api:
        run: dict[str, Any] | None = (await api.query(RUN_CREATED, id=run_id))["run"]
    if run is None:
        raise CLIError(f"run {run_id} not found (or not visible to this API key's tenant)")
    return run


def show_at(run_id: str, at: str, as_json: bool) -> None:
    settings = Settings()

    async def fold() -> dict[str, Any]:
        run = await _visible_run(settings, run_id)
        try:
            history = await read_run(
                settings.kafka_bootstrap, run_id, since=datetime.fromisoformat(run["createdAt"])
            )
            upto = until(history, at)
        except RunLogError as e:
            raise CLIError(str(e)) from e
        except (KafkaError, OSError) as e:
            raise _kafka_down(settings, e) from e
        return describe(state_at(upto), upto)

    view = asyncio.run(fold())
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    edges = [
        {"node": {"type": e["type"], "occurredAt": e["occurred_at"], **e}} for e in view["events"]
    ]
    console.print(timeline_table({"events": {"edges": edges}}))
    nodes = [
        {
            "id": node_id,
            "type": n["type"],
            "status": n["status"],
            "attempts": n["attempt"],
            "output": n["output"] if n["output"] is not None else n["output_ref"],
            "error": n["error"],
            "items": n.get("items"),
        }
        for node_id, n in view["nodes"].items()
    ]
    console.print(nodes_table({"nodes": nodes}))
    point = view["at"]
    why = f" ({view['reason']})" if view["reason"] else ""
    console.print(
        f"run {view['run_id']} at event {point['seq']} of its history ({point['type']}, "
        f"{point['position']}): {view['status']}{why}, version {short(view['version'])}",
        highlight=False,
    )


def line(t: Tailed) -> str:
    """One record as one readable line: time, position, type, key, node, detail."""
    when = t.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if t.event is None:
        return f"{when}  {t.position.token()}  [bold red]undecodable[/] {escape(t.key)}  " + escape(
            t.problem or ""
        )
    payload: dict[str, Any] = t.event.payload.model_dump(mode="json")
    node = payload.get("node_id")
    actor = t.event.actor
    detail = event_detail(t.event.type, payload, actor.model_dump(mode="json"))
    return "  ".join(
        part
        for part in (
            f"[dim]{when}  {t.position.token()}[/]",
            f"[bold]{t.event.type}[/]",
            escape(t.event.aggregate_id),
            f"node={escape(node)}" if node else "",
            f"by {actor.kind}:{escape(actor.id)}",
            escape(detail),
        )
        if part
    )


@events_app.command("tail")
def events_tail(
    run_id: str | None = typer.Option(None, "--run", metavar="RUN", help="Only this run."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    lines: int = typer.Option(20, "--lines", "-n", min=0, help="How many to show first."),
) -> None:
    """Print the log's last events as readable lines (with --run, that run's, if it is
    AOB_API_KEY's tenant's); with --follow, keep printing them as they are appended (Ctrl-C
    stops)."""
    settings = Settings()

    async def tail() -> None:
        if run_id is not None:
            await _visible_run(settings, run_id)
        try:
            async with LogTail(settings.kafka_bootstrap, run_id) as log:
                if not log.partitions:
                    raise CLIError("the event topics do not exist yet; run `aob up`")
                for t in await log.last(lines):
                    console.print(line(t), highlight=False, soft_wrap=True)
                if follow:
                    hints.print(
                        f"[dim]following {log.partitions} partition(s); Ctrl-C stops[/]",
                        highlight=False,
                    )
                    async for t in log.follow():
                        console.print(line(t), highlight=False, soft_wrap=True)
        except (KafkaError, OSError) as e:
            raise _kafka_down(settings, e) from e

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail())


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
