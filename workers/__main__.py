"""``python -m workers [--types noop,transform,condition]``: serve tasks until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from cas.store import ContentStore
from infra.bus import EventBus
from infra.heartbeat import beat
from infra.settings import get_settings
from workers.execute import TaskExecutor
from workers.handlers import HANDLERS
from workers.runtime import DEFAULT_CONCURRENCY, handler_types, serve, worker_name


async def main(types: list[str], concurrency: int) -> None:
    settings = get_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    store = ContentStore.from_settings(settings)
    await asyncio.to_thread(store.ensure_bucket)
    bus = EventBus(settings.kafka_bootstrap, client_id="aob-workers")
    await bus.start()
    heartbeat = asyncio.create_task(beat(settings, "workers"))
    try:
        executor = TaskExecutor(
            events=bus, store=store, handlers=HANDLERS, worker_name=worker_name()
        )
        logging.getLogger("workers").info("serving %s", ", ".join(types))
        await serve(
            types,
            bootstrap=settings.kafka_bootstrap,
            executor=executor,
            dead_letters=bus,
            stop=stop,
            concurrency=concurrency,
        )
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await bus.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--types", help="comma-separated node types (default: every handler's)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    try:
        types = handler_types(HANDLERS, args.types)
    except ValueError as e:
        parser.error(str(e))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(types, args.concurrency))


if __name__ == "__main__":
    cli()
