"""The command API service: FastAPI app, its lifespan and its middleware."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth import ensure_schema as ensure_auth_schema
from cas import ContentStore
from command_api import idempotency, problems, registry
from command_api.context import CommandContext
from command_api.metrics import LATENCY, REGISTRY, REQUESTS
from command_api.ratelimit import TokenBuckets
from command_api.routes import router
from command_api.settings import CommandApiSettings
from infra.bus import EventBus
from infra.settings import Settings, get_settings


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or by counting a streamed body.
    (Starlette sets no limit of its own.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(
            413, "Content Too Large", f"the request body is over {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive``. An HTTPException, because FastAPI turns any other error met
    while reading a body into a 400; this one it passes on, and it ends as a 413 problem."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is over the limit")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    limits = CommandApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=10)
        async with pool.acquire() as conn:
            await ensure_auth_schema(conn)
            await registry.ensure_schema(conn)
            await idempotency.forget_old(conn, limits.idempotency_ttl_hours)
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
        )
        app.state.commands = ctx
        try:
            yield
        finally:
            ctx.bus_started = False
            await bus.stop()
            await pool.close()

    app = FastAPI(title="AOB command API", version="1", lifespan=lifespan)
    problems.install(app)
    app.include_router(router)

    @app.middleware("http")
    async def measure(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        LATENCY.labels(path, request.method).observe(time.perf_counter() - started)
        REQUESTS.labels(path, request.method, str(response.status_code)).inc()
        return response

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
    return app
