"""``python -m aob.worker MODULE [--concurrency N] [--metrics-port PORT]`` (also ``aob worker``):
serve the node types that MODULE declares with ``@node``, until SIGTERM or Ctrl-C.

MODULE is a Python file (``shout.py``) or a dotted module name (``shop.nodes``), found from
the current directory first. The worker registers each type with the command API (URL from
the deployment's settings, ``AOB_COMMAND_API_PORT`` / ``AOB_HOST``; key from ``AOB_API_KEY``,
scope ``publish``), then serves them as the built-in workers serve theirs
(``aob.serving``). It needs what they need: the deployment's Kafka, PostgreSQL and MinIO
(``AOB_*`` settings) and, for configs that name secrets, its secrets key.

Exit status: 0 after a clean stop, 1 if it could not start (the reason on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aob.loading import LoadError, load_nodes
from aob.nodes import NodeDefinition
from aob.registration import API_KEY_VARIABLE, RegistrationRefused, register
from aob.serving import Presence, WorkerStopped, fixed_handlers, serve_node_types
from infra.settings import get_settings
from workers.redaction import mask_logs
from workers.runtime import DEFAULT_CONCURRENCY

PROGRAM = "aob worker"


async def run_worker(
    definitions: Sequence[NodeDefinition],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    metrics_port: int = 0,
    stop: asyncio.Event | None = None,
) -> None:
    """Register ``definitions`` for the tenant of ``AOB_API_KEY``, then serve them until
    ``stop`` (or a signal). ``RegistrationRefused`` or ``WorkerStopped`` if it cannot."""
    settings = get_settings()
    tenant = await register(
        definitions, api_url=settings.command_api_url, api_key=os.environ.get(API_KEY_VARIABLE)
    )
    names = ", ".join(d.name for d in definitions)
    logging.getLogger("aob.worker").info("registered %s for tenant %s", names, tenant)
    await serve_node_types(
        fixed_handlers({d.name: d for d in definitions}),
        program=PROGRAM,
        concurrency=concurrency,
        presence=Presence(metrics_port=metrics_port, tenant=tenant),
        stop=stop,
    )


def serve_module(module: str, *, concurrency: int, metrics_port: int, program: str) -> int:
    """Load ``module``, register and serve its types: the exit status (module doc)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_logs()  # no line logged during an attempt shows a secret it used (workers.redaction)
    if concurrency < 1:
        print(f"{program}: --concurrency must be at least 1", file=sys.stderr)
        return 1
    try:
        _, definitions = load_nodes(module)
        asyncio.run(run_worker(definitions, concurrency=concurrency, metrics_port=metrics_port))
    except (LoadError, RegistrationRefused, WorkerStopped) as e:
        print(f"{program}: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    console_script = Path(sys.argv[0]).name == "aob-worker"  # aob-sdk's own command
    parser = argparse.ArgumentParser(
        prog="aob-worker" if console_script else "python -m aob.worker",
        description="Serve the node types a module declares with @node (from aob import node).",
    )
    parser.add_argument("module", help="a Python file (shout.py) or a dotted module name")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"tasks run at once in this process (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics here (0: none)"
    )
    args = parser.parse_args(argv)
    return serve_module(
        args.module,
        concurrency=args.concurrency,
        metrics_port=args.metrics_port,
        program=parser.prog,
    )


if __name__ == "__main__":
    sys.exit(main())
