"""``aob replay projections`` and ``aob replay dump``: the read models rebuilt from the log,
and a stable dump of them to compare before and after.

The rebuild itself lives in :mod:`replay.rebuild`; this module only draws its progress and
turns its failures into one line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import asyncpg
import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cas import ContentStore
from cli import CLIError
from infra.settings import Settings
from projections.errors import ProjectionError
from read_model.errors import ReadModelError
from read_model.offsets import DEFAULT_PROJECTION
from replay import rebuild as rebuilding
from replay.dump import dump_schema
from replay.errors import ReplayError

console = Console(stderr=True)
replay_app = typer.Typer(help="Rebuild the read models from the log.", no_args_is_help=True)

# The live projector's own setting (python -m projections): the schema of the live tables.
LIVE_SCHEMA_ENV = "AOB_PROJECTION_SCHEMA"


def _live_schema() -> str | None:
    return os.environ.get(LIVE_SCHEMA_ENV) or None


def _unreachable(e: BaseException) -> CLIError:
    kind = "Kafka" if isinstance(e, KafkaError) else "PostgreSQL"
    return CLIError(f"{kind} is not reachable ({e or type(e).__name__}); run `aob up`")


@replay_app.command("projections")
def replay_projections(
    name: str = typer.Option(DEFAULT_PROJECTION, "--name", help="The projection to rebuild."),
    as_json: bool = typer.Option(False, "--json", help="Print only the result, as JSON."),
) -> None:
    """Rebuild the read models from the start of the log into fresh tables, then swap them
    in at once. Queries keep working throughout; the live projector keeps running."""
    # aiokafka logs a failed connection itself; the one line below says it already.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        rebuilding.topics_of(name)  # an unknown name fails before any connection
    except ReplayError as e:
        raise CLIError(str(e)) from e
    settings = Settings()
    config = rebuilding.RebuildConfig(
        bootstrap=settings.kafka_bootstrap,
        dsn=settings.postgres_dsn,
        projection=name,
        live_schema=_live_schema(),
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records · {task.fields[events]} events · {task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("reading the log", total=None, events=0, rate="-")
        done = _run(config, settings, bar, task)
    if as_json:
        typer.echo(json.dumps(done.as_json()))
    else:
        typer.echo(
            f"rebuilt {done.projection}: {done.events} events ({done.records} records) in "
            f"{done.seconds:.1f} s, {done.events_per_second:,.0f} events/s; "
            f"{len(done.tables)} tables swapped into schema {done.schema}"
        )
    if done.leftovers:
        console.print(f"dropped what an earlier rebuild left: {', '.join(done.leftovers)}")
    if done.kept:
        console.print(f"[yellow]warning:[/] {done.kept}", highlight=False)


def _run(
    config: rebuilding.RebuildConfig, settings: Settings, bar: Progress, task: TaskID
) -> rebuilding.Rebuilt:
    def show(p: rebuilding.Progress) -> None:
        elapsed = bar.tasks[task].elapsed or 0.0
        rate = f"{p.events / elapsed:,.0f}" if elapsed > 0 else "-"
        bar.update(
            task,
            description=p.stage,
            completed=p.records,
            total=p.total,
            events=p.events,
            rate=rate,
        )

    try:
        return asyncio.run(
            rebuilding.rebuild(config, ContentStore.from_settings(settings), on_progress=show)
        )
    except KeyboardInterrupt:
        raise CLIError(
            "interrupted: the live read models are unchanged; the partial rebuild was dropped"
        ) from None
    except (ReplayError, ProjectionError, ReadModelError) as e:
        raise CLIError(str(e)) from e
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as e:
        raise _unreachable(e) from e


@replay_app.command("dump")
def replay_dump(
    out: str | None = typer.Option(None, "--out", help="Write the dump here (default: stdout)."),
    schema: str | None = typer.Option(
        None, "--schema", help="The schema to dump (default: the live read models)."
    ),
) -> None:
    """A stable dump of the read models: rows by primary key as canonical JSON lines, then a
    SHA-256 per table. Two dumps are equal when the read models hold the same facts."""
    try:
        dump = asyncio.run(dump_schema(Settings().postgres_dsn, schema or _live_schema()))
    except (ReadModelError, ValueError) as e:
        raise CLIError(str(e)) from e
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise _unreachable(e) from e
    if out is None:
        for line in dump.lines():
            typer.echo(line)
    else:
        with Path(out).open("w") as f:
            for line in dump.lines():
                f.write(line + "\n")
        for table, digest in dump.digests().items():
            typer.echo(f"{table:<20} {digest}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(replay_app, name="replay")
