"""``aob worker MODULE``: serve the node types a Python module declares with ``@node``.

The same as ``python -m aob.worker MODULE`` (``aob.worker``): this only puts it under the
``aob`` command, beside the others.
"""

from __future__ import annotations

from typing import Any

import typer


def worker(
    module: str = typer.Argument(
        ..., help="A Python file (shout.py) or a dotted module name (shop.nodes)."
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Tasks run at once in this process (default 32)."
    ),
    metrics_port: int = typer.Option(
        0, "--metrics-port", help="Serve Prometheus metrics on this port (0: none)."
    ),
) -> None:
    """Register the module's node types (AOB_API_KEY, scope publish) and serve them until
    SIGTERM or Ctrl-C."""
    from aob.worker import serve_module
    from workers.runtime import DEFAULT_CONCURRENCY

    status = serve_module(
        module,
        concurrency=DEFAULT_CONCURRENCY if concurrency is None else concurrency,
        metrics_port=metrics_port,
        program="aob worker",
    )
    raise typer.Exit(status)


def register(app: Any) -> None:
    app.command("worker")(worker)
