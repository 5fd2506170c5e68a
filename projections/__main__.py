"""``python -m projections [--schema S] [--name N] [--topic-prefix P]``: read models until SIGTERM.

``--schema`` writes into that Postgres schema instead of the default one (rebuilds, tests);
``--name`` names the projection whose offsets are kept (one set of offsets per name);
``--topic-prefix`` reads an isolated log (``<prefix>.runs.events``, …) instead of ``aob.*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from cas import ContentStore
from infra.event_loop import install as install_event_loop
from infra.gc_tuning import tune as tune_gc
from infra.heartbeat import beat
from infra.metrics import serve_metrics
from infra.settings import get_settings
from projections.metrics import REGISTRY
from projections.runner import TOPICS, Projector, ProjectorConfig, topics_with_prefix
from projections.settings import ProjectionsSettings
from read_model.offsets import DEFAULT_PROJECTION


async def main(schema: str | None, name: str, topic_prefix: str | None) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Only the service writing the live tables answers for "projections" in `aob status`.
    beat_name = "projections" if schema is None else f"projections-{schema}"
    heartbeat = asyncio.create_task(beat(settings, beat_name))
    if schema is None and topic_prefix is None:  # the live projector, not a test's or a rebuild's
        serve_metrics(settings, "projections", REGISTRY)
    try:
        config = ProjectorConfig(
            bootstrap=settings.kafka_bootstrap,
            dsn=settings.postgres_dsn,
            projection=name,
            schema=schema,
            topics=topics_with_prefix(topic_prefix) if topic_prefix else TOPICS,
            batch_every_s=ProjectionsSettings().batch_every_ms / 1000,
        )
        # The projector stores patched versions' definitions and IRs (the coordinator does
        # no storage I/O), so it needs the CAS too.
        await Projector(config, ContentStore.from_settings(settings)).run(stop)
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    parser.add_argument("--schema", default=os.environ.get("AOB_PROJECTION_SCHEMA") or None)
    parser.add_argument("--name", default=DEFAULT_PROJECTION)
    parser.add_argument(
        "--topic-prefix", help="read <prefix>.workflows.events and <prefix>.runs.events"
    )
    args = parser.parse_args()
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=os.environ.get("AOB_LOG_LEVEL", "INFO"), format=log_format)
    tune_gc(get_settings().gc_gen0)
    install_event_loop()
    asyncio.run(main(args.schema, args.name, args.topic_prefix))


if __name__ == "__main__":
    cli()
