"""One worker process: serve a set of node types until SIGTERM, with the runtime's guarantees.

The built-in workers (``python -m workers``) and a user's (``aob worker MODULE``, ``python -m
aob.worker MODULE``) are both this function, so a node type written with the SDK runs
exactly as the built-in ones do: one consumer group per type on ``aob.tasks.<type>``, tasks
run by ``workers.execute.TaskExecutor`` (at least once under the attempt's idempotency key,
the attempt's time limit, failures classed retryable or not, outputs inline or in the CAS,
secrets masked), fair execution over the tenants' limits in PostgreSQL (``workers.fair``),
and on SIGTERM or SIGINT: nothing new starts, running tasks finish (``workers.runtime``),
offsets are committed.

Every worker says which types it serves in the node-type registry (a row per type, every
3 s: ``aob.registration.Liveness``), which GraphQL's ``nodeTypes`` shows: a custom worker for
the types it registered for its tenant, the built-in workers as the engine's
(``node_types.ENGINE``), whose types every tenant has. Besides, the stack's built-in workers
touch ``<home>/run/workers.heartbeat`` (``infra.heartbeat``), which ``aob status`` reads, and
serve their metrics on ``AOB_WORKERS_METRICS_PORT``; a custom worker may run anywhere, and
serves metrics only where asked (``--metrics-port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from aob.registration import Liveness, open_registry
from cas.store import ContentStore
from infra.bus import EventBus
from infra.heartbeat import beat
from infra.metrics import serve_metrics
from infra.settings import get_settings
from limits.concurrency_leases import ConcurrencyLeases
from limits.rate_buckets import RateBuckets
from limits.store import LimitsStore
from node_types.registry import ENGINE
from secret_store import SecretsKeyError, cipher_from_settings
from templating import renders
from workers.execute import TaskExecutor
from workers.fair.dispatch import FairSettings
from workers.handlers.base import Handler
from workers.metrics import REGISTRY
from workers.runtime import Fairness, handler_types, serve, worker_name
from workers.secret_values import CachedSecrets, PostgresSecrets
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)

# Opens the handlers of a process: their clients (an HTTP client, a model client) opened on
# the stack and closed with it.
HandlerSource = Callable[[WorkerSettings, contextlib.AsyncExitStack], Awaitable[Mapping[str, Any]]]


class WorkerStopped(Exception):
    """The worker cannot start as configured, or cannot reach the deployment's servers (see
    ``AOB_*`` in the README's Configuration): the message says why."""


@dataclass(frozen=True)
class Presence:
    """How the process shows that it is alive (module doc)."""

    heartbeat_file: str | None = None  # the stack's heartbeat file (``infra.heartbeat``)
    metrics_port: int | None = None  # None: the deployment's AOB_WORKERS_METRICS_PORT
    tenant: str | None = None  # beat in the registry as this tenant's (None: no beats)


STACK_WORKERS = Presence(heartbeat_file="workers", tenant=ENGINE)


def fixed_handlers(handlers: Mapping[str, Handler]) -> HandlerSource:
    """A source of handlers that hold no clients (``@node`` functions)."""

    async def source(
        settings: WorkerSettings, stack: contextlib.AsyncExitStack
    ) -> Mapping[str, Any]:
        return handlers

    return source


async def serve_node_types(
    open_handlers: HandlerSource,
    *,
    program: str,
    concurrency: int,
    requested: str | None = None,
    presence: Presence = STACK_WORKERS,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the handlers' types (``requested``: a comma-separated subset) until ``stop``
    is set, or SIGTERM or SIGINT arrives. ``WorkerStopped`` if it cannot start."""
    settings = get_settings()
    worker_settings = WorkerSettings()
    stop = stop or asyncio.Event()
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
            raise WorkerStopped(str(e)) from None
        try:
            cipher = cipher_from_settings(settings)
        except SecretsKeyError as e:
            raise WorkerStopped(str(e)) from None
        secrets = PostgresSecrets(settings.postgres_dsn, cipher)
        clients.push_async_callback(secrets.close)
        try:
            pool = await _pool(settings.postgres_dsn, clients)
            fairness = await _fairness(pool, worker_settings)
        except (OSError, asyncpg.PostgresError) as e:
            raise WorkerStopped(f"PostgreSQL cannot be used: {type(e).__name__}: {e}") from e
        store = ContentStore.from_settings(settings)
        try:
            await asyncio.to_thread(store.ensure_bucket)
        except Exception as e:
            raise WorkerStopped(
                f"the CAS (MinIO at {settings.minio_endpoint}) cannot be used: "
                f"{type(e).__name__}: {e}"
            ) from e
        bus = EventBus(settings.kafka_bootstrap, client_id="aob-workers")
        clients.push_async_callback(bus.stop)  # also after a start that failed half-way
        try:
            await bus.start()
        except KafkaError as e:
            raise WorkerStopped(
                f"Kafka at {settings.kafka_bootstrap} cannot be reached: {e}"
            ) from e
        name = worker_name()
        await _show_presence(presence, pool, types, name, clients)
        executor = TaskExecutor(
            events=bus,
            store=store,
            handlers=handlers,
            worker_name=name,
            runs_topic=worker_settings.runs_topic,
            max_output_bytes=worker_settings.max_output_bytes,
            report_start_after_s=worker_settings.report_start_after_ms / 1000,
            secrets=CachedSecrets(secrets),
            tasks=bus,  # an agent's calls of registered node types
        )
        log.info("%s serving %s as %s", program, ", ".join(types), name)
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
        log.info("%s stopped: every task it had started has finished", program)


async def _show_presence(
    presence: Presence,
    pool: Any,
    types: Sequence[str],
    name: str,
    clients: contextlib.AsyncExitStack,
) -> None:
    """Start what tells the world that this process serves ``types`` (module doc); what
    is started is stopped with ``clients``."""
    settings = get_settings()
    if presence.heartbeat_file is not None:
        _background(beat(settings, presence.heartbeat_file), clients)
    if presence.metrics_port is None:
        serve_metrics(settings, "workers", REGISTRY)
    elif presence.metrics_port:
        port = presence.metrics_port
        serve_metrics(
            settings.model_copy(update={"workers_metrics_port": port}), "workers", REGISTRY
        )
    if presence.tenant is not None:
        liveness = Liveness(await open_registry(pool), presence.tenant, list(types), name)
        clients.push_async_callback(liveness.gone)  # after the beats stop (pushed later)
        _background(liveness.run(), clients)


def _background(work: Awaitable[None], clients: contextlib.AsyncExitStack) -> None:
    task = asyncio.ensure_future(work)

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    clients.push_async_callback(cancel)


async def _pool(dsn: str, clients: contextlib.AsyncExitStack) -> Any:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
    clients.push_async_callback(pool.close)
    return pool


async def _fairness(pool: Any, settings: WorkerSettings) -> Fairness:
    """Fair execution's shared state: each tenant's limits, the concurrency key leases and the
    rate limits, in the deployment's PostgreSQL (their tables made if need be)."""
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
