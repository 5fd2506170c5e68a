"""The command API service: FastAPI app, its lifespan and its middleware."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from auth import RevocationListener
from auth import ensure_schema as ensure_auth_schema
from cas import ContentStore
from command_api import idempotency, problems, registry
from command_api.context import CommandContext
from command_api.cors import allow_console
from command_api.key_routes import router as key_router
from command_api.limit_routes import router as limit_router
from command_api.metrics import REGISTRY
from command_api.node_type_routes import router as node_type_router
from command_api.request_metrics import RequestMetrics
from command_api.routes import router
from command_api.secret_routes import router as secret_router
from command_api.settings import CommandApiSettings
from command_api.trigger_routes import router as trigger_router
from infra.body_limit import BodyLimit
from infra.bus import EventBus
from infra.pg_pool import create_pool
from infra.ratelimit import TokenBuckets
from infra.settings import Settings, get_settings
from limits import admission_check
from limits.changes import LimitsListener
from limits.store import LimitsStore
from secret_store import SecretStore, cipher_from_settings
from triggers import event_waits
from triggers.hooks import HookStore
from triggers.schedule_store import ScheduleStore


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    limits = CommandApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cipher = cipher_from_settings(settings)  # a bad AOB_SECRETS_KEY stops the start
        pool = await create_pool(settings.postgres_dsn, min_size=1, max_size=10)
        secrets = SecretStore(pool, cipher)
        tenant_limits = LimitsStore(pool)
        async with pool.acquire() as conn:
            await ensure_auth_schema(conn)
            await registry.ensure_schema(conn)
            await idempotency.forget_old(conn, limits.idempotency_ttl_hours)
        await tenant_limits.ensure_schema()
        await admission_check.ensure_schema(pool)
        # Revoked keys are forgotten the moment they are revoked (auth.revocations), changed
        # limits the moment they change (limits.changes).
        revocations = RevocationListener.to(settings.postgres_dsn, "aob-command-api-keys")
        await revocations.start()
        limit_changes = LimitsListener.to(
            settings.postgres_dsn, "aob-command-api-limits", tenant_limits
        )
        await limit_changes.start()
        await secrets.ensure_schema()
        bus = EventBus(settings.kafka_bootstrap, client_id="aob-command-api")
        await bus.start()
        cas = ContentStore.from_settings(settings)
        await asyncio.to_thread(cas.ensure_bucket)
        ctx = CommandContext(
            pool=pool,
            bus=bus,
            cas=cas,
            settings=limits,
            buckets=TokenBuckets(limits.rate_per_second, limits.rate_burst),
            bus_started=True,
            kafka_bootstrap=settings.kafka_bootstrap,
            secrets=secrets,
            limits_store=tenant_limits,
            topic_partitions=settings.topic_partitions,
            hooks=HookStore(pool, cipher),
            schedules=ScheduleStore(pool),
        )
        await ctx.node_types.ensure_schema()
        await ctx.hooks.ensure_schema()
        await ctx.schedules.ensure_schema()
        await event_waits.ensure_schema(pool)
        app.state.commands = ctx
        try:
            yield
        finally:
            ctx.bus_started = False
            await revocations.stop()
            await limit_changes.stop()
            await bus.stop()
            await pool.close()

    app = FastAPI(title="AOB command API", version="1", lifespan=lifespan)
    problems.install(app)
    app.include_router(router)
    app.include_router(key_router)
    app.include_router(limit_router)
    app.include_router(secret_router)
    app.include_router(node_type_router)
    app.include_router(trigger_router)

    app.add_middleware(RequestMetrics)

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        """Liveness: the Kafka producer is started and PostgreSQL answers (no auth)."""
        ctx: CommandContext = request.app.state.commands
        checks = {"kafka_producer": "ok" if ctx.bus_started else "stopped"}
        try:
            async with asyncio.timeout(2):
                await ctx.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            checks["postgres"] = f"unreachable: {type(e).__name__}"
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        return problems.problem(
            503,
            "Service Unavailable",
            "not healthy: " + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
            checks=checks,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    # Outermost, so that refusals (413, 429, 401) reach the console with their reason too.
    allow_console(app, settings, limits.cors_origins)
    return app
