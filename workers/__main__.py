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
from infra.metrics import serve_metrics
from infra.settings import get_settings
from limits.concurrency_leases import ConcurrencyLeases
from limits.rate_buckets import RateBuckets
from limits.store import LimitsStore
from secret_store import SecretsKeyError, cipher_from_settings
from templating import renders
from workers.execute import TaskExecutor
from workers.fair.dispatch import FairSettings
from workers.handlers import open_handlers
from workers.metrics import REGISTRY
from workers.redaction import mask_logs
from workers.runtime import DEFAULT_CONCURRENCY, Fairness, handler_types, serve, worker_name
from workers.secret_values import CachedSecrets, PostgresSecrets
from workers.settings import WorkerSettings


async def main(requested: str | None, concurrency: int) -> None:
    settings = get_settings()
    worker_settings = WorkerSettings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as clients:
        # Templates render in processes of their own, under limits (templating.renders):
        # started now so that the first task waits for nothing, stopped last.
        renders.start()
        clients.push_async_callback(renders.shutdown)
        handlers = await open_handlers(worker_settings, clients)
        try:
            types = handler_types(handlers, requested)
        except ValueError as e:
            raise SystemExit(f"python -m workers: {e}") from None
        try:
            cipher = cipher_from_settings(settings)
        except SecretsKeyError as e:
            raise SystemExit(f"python -m workers: {e}") from None
        secrets = PostgresSecrets(settings.postgres_dsn, cipher)
        clients.push_async_callback(secrets.close)
        fairness = await _fairness(settings.postgres_dsn, worker_settings, clients)
        store = ContentStore.from_settings(settings)
        await asyncio.to_thread(store.ensure_bucket)
        bus = EventBus(settings.kafka_bootstrap, client_id="aob-workers")
        await bus.start()
        heartbeat = asyncio.create_task(beat(settings, "workers"))
        serve_metrics(settings, "workers", REGISTRY)
        try:
            executor = TaskExecutor(
                events=bus,
                store=store,
                handlers=handlers,
                worker_name=worker_name(),
                runs_topic=worker_settings.runs_topic,
                max_output_bytes=worker_settings.max_output_bytes,
                secrets=CachedSecrets(secrets),
                tasks=bus,  # an agent's calls of registered node types
            )
            logging.getLogger("workers").info("serving %s", ", ".join(types))
            await serve(
                types,
                bootstrap=settings.kafka_bootstrap,
                executor=executor,
                dead_letters=bus,
                stop=stop,
                concurrency=concurrency,
                topic_prefix=worker_settings.task_topic_prefix,
                group_prefix=worker_settings.group_prefix,
                fairness=fairness,
            )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await bus.stop()


async def _fairness(
    dsn: str, settings: WorkerSettings, clients: contextlib.AsyncExitStack
) -> Fairness:
    """Fair execution's shared state: each tenant's limits, the concurrency key leases and the
    rate limits, in the deployment's PostgreSQL (their tables made if need be)."""
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
    clients.push_async_callback(pool.close)
    limits, leases, rates = (
        LimitsStore(pool),
        ConcurrencyLeases(pool, ttl_s=settings.lease_ttl_s),
        RateBuckets(pool),
    )
    for store in (limits, leases, rates):
        await store.ensure_schema()
    return Fairness(
        limits=limits,
        leases=leases,
        rates=rates,
        settings=FairSettings(
            max_waiting=settings.max_waiting,
            max_waiting_bytes=settings.max_waiting_bytes,
            key_retry_s=settings.key_retry_s,
        ),
    )


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__)
    parser.add_argument("--types", help="comma-separated node types (default: every handler's)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mask_logs()  # no line logged during an attempt shows a secret it used (workers.redaction)
    asyncio.run(main(args.types, args.concurrency))


if __name__ == "__main__":
    cli()
