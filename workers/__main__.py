"""``python -m workers [--types noop,transform,condition]``: serve the built-in node types
until SIGTERM.

The same serving code as a user's worker (``aob worker``, ``aob.serving``) with the built-in
handlers (``workers.builtins``); unlike a user's, these are not registered (the engine knows
them): the process beats for them in the registry as the engine's, and shows it is alive the
way the stack's services do too (a heartbeat file under ``<home>/run``, metrics on
``AOB_WORKERS_METRICS_PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aob.serving import STACK_WORKERS, WorkerStopped, serve_node_types
from infra.gc_tuning import tune as tune_gc
from infra.settings import get_settings
from workers.builtins import open_handlers
from workers.redaction import mask_logs
from workers.runtime import DEFAULT_CONCURRENCY

PROGRAM = "python -m workers"


def cli() -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--types", help="comma-separated node types (default: every handler's)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_logs()  # no line logged during an attempt shows a secret it used (workers.redaction)
    tune_gc(get_settings().gc_gen0)
    try:
        asyncio.run(
            serve_node_types(
                open_handlers,
                program=PROGRAM,
                concurrency=args.concurrency,
                requested=args.types,
                presence=STACK_WORKERS,
            )
        )
    except WorkerStopped as e:
        raise SystemExit(f"{PROGRAM}: {e}") from None


if __name__ == "__main__":
    cli()
