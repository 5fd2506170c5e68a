"""``aob schemas export DIR``: the wire contract as JSON Schema files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

schemas_app = typer.Typer(help="The wire contract (events, commands, workflow format).")


@schemas_app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to write the schemas into.")],
) -> None:
    """Write one JSON Schema file per event, task, command and workflow model."""
    from schemas.export import export_json_schemas

    written = export_json_schemas(directory)
    typer.echo(f"wrote {len(written)} schemas to {directory}")


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
