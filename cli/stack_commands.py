"""``aob up``, ``aob down`` and ``aob status``: the local stack and the services."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from infra.instances import SCALABLE, ScaleError, parse_scale
from infra.scripted_llm.mode import notice as scripted_model_notice
from infra.scripted_llm.mode import uses_scripted_model
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.stack import ComponentStatus

console = Console()


class RichProgress:
    """Spinner lines for long steps (several may run at once, e.g. a build while Kafka
    starts); a finished step is printed with its duration."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._active: list[str] = []
        self._status: Status | None = None

    def _refresh(self) -> None:
        text = " · ".join(self._active)
        if not self._active:
            if self._status is not None:
                self._status.stop()
                self._status = None
        elif self._status is None:
            self._status = self.out.status(text)
            self._status.start()
        else:
            self._status.update(text)

    @contextmanager
    def step(self, message: str) -> Iterator[None]:
        started = time.monotonic()
        with self._lock:
            self._active.append(message)
            self._refresh()
        try:
            yield
        finally:
            with self._lock:
                self._active.remove(message)
                self._refresh()
        took = time.monotonic() - started
        self.out.print(f"[green]✓[/] {message.rstrip('…')} [dim]({took:.1f}s)[/]")

    def info(self, message: str) -> None:
        self.out.print(message)


def _stack() -> Stack:
    return Stack(Settings(), progress=RichProgress(console))


def up(
    infra_only: bool = typer.Option(
        False, "--infra-only", help="Only Kafka, PostgreSQL and MinIO, not AOB's services."
    ),
    scale: str | None = typer.Option(
        None,
        "--scale",
        help="Instances per service, e.g. coordinator=2,workers=2,projections=2 "
        f"(of {', '.join(SCALABLE)}; kept until `aob down`).",
    ),
) -> None:
    """Start what is missing (Kafka, PostgreSQL, MinIO, the services); print the URLs."""
    stack = _stack()
    try:
        wanted = parse_scale(scale) if scale is not None else None
    except ScaleError as e:
        raise typer.BadParameter(str(e), param_hint="--scale") from None
    started = time.monotonic()
    comps = asyncio.run(stack.up(infra_only=infra_only, scale=wanted))
    console.print(f"[bold green]AOB is up[/] in {time.monotonic() - started:.1f}s")
    table = Table(show_header=False, box=None)
    for row in address_rows(stack.urls(), comps):
        table.add_row(*row)
    table.add_row("data", str(stack.settings.home))
    console.print(table)
    if not infra_only and uses_scripted_model():
        console.print(f"[yellow]{scripted_model_notice(stack.settings)}[/]")


def address_rows(urls: dict[str, str], comps: list[ComponentStatus]) -> list[tuple[str, str]]:
    """What ``aob up`` prints of where to reach the stack: each address once."""
    rows = [
        ("kafka bootstrap", urls["kafka_bootstrap"]),
        ("postgres dsn", urls["postgres_dsn"]),
        ("minio endpoint", f"http://{urls['minio_endpoint']}"),
        ("minio console", urls["minio_console_url"]),
    ]
    named = [
        ("command api", urls["command_api_url"]),
        ("query api", urls["query_api_url"]),
        ("console", urls["console_url"]),
    ]
    own = {url for _, url in named}
    for comp in comps:  # other services with an address (the scripted model, more instances)
        if comp.name not in {"kafka", "postgres", "minio"} and comp.url and comp.url not in own:
            rows.append((comp.name, comp.url))
    return rows + named


def down(
    purge: bool = typer.Option(False, "--purge", help="Also delete the stack's data."),
) -> None:
    """Stop what ``aob up`` started. Data stays unless --purge."""
    stack = _stack()
    stopped = asyncio.run(stack.down(purge=purge))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if purge:
        console.print(f"purged data under {stack.settings.home}")


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Each component: running or not, its URL and process id."""
    data = asyncio.run(_stack().status())
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table("component", "running", "pid", "url")
    for c in data["components"]:
        table.add_row(
            c["name"],
            "[green]yes[/]" if c["running"] else "[red]no[/]",
            str(c["pid"] or "-") if c["managed"] else "external",
            c["url"] or "",
        )
    console.print(table)
    console.print(
        f"command api {data['command_api_url']}   query api {data['query_api_url']}   "
        f"console {data['console_url']}"
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
