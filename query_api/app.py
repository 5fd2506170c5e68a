"""The query API service: Strawberry GraphQL on FastAPI, GraphiQL in the browser.

Every request is authenticated with the same API keys as the command API and sees only its
tenant's workflows and runs; a missing or unknown key is a 401 answer, not a GraphQL error.
The GraphiQL page itself loads without a key (it is static and runs no query); every query
it sends needs one (set ``Authorization`` in GraphiQL's headers pane).

A WebSocket (subscriptions, graphql-transport-ws only) brings its key in the upgrade's
``Authorization`` header or in the ``connection_init`` payload (``{"Authorization":
"Bearer <key>"}``, which wins); without a valid one the connection is closed with code 4401
and the reason, before any operation runs.

Queries and subscriptions need a key with the ``read`` scope: without it, a query is a 403
answer and a WebSocket is closed with code 4403, each naming the scope. A revoked key is
forgotten by this process as the revocation commits (``auth.revocations``), and its open
subscriptions are woken then, so that each ends with an error at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types.unset import UNSET, UnsetType

from auth import RevocationListener, authenticate
from auth import ensure_schema as ensure_auth_schema
from auth.scopes import READ
from cas import ContentStore
from infra.body_limit import BodyLimit
from infra.pg_pool import create_pool
from infra.ratelimit import TokenBuckets
from infra.settings import Settings, get_settings
from node_types.registry import ensure_schema as ensure_node_types
from query_api.console import mount_console
from query_api.context import ReadContext
from query_api.errors import MissingScope, Unauthenticated
from query_api.listen import Listener
from query_api.loaders import (
    approvals_loader,
    events_loader,
    nodes_loader,
    patches_loader,
    versions_loader,
)
from query_api.progress import ProgressWatcher
from query_api.run_changes import RunChanges
from query_api.schema import build_schema
from query_api.settings import QueryApiSettings
from query_api.tenant_subscriptions import TenantSubscriptions
from read_model.schema import check_schema_name
from read_model.schema import ensure_schema as ensure_read_models

UNAUTHORIZED = (
    "missing or unknown API key: send 'Authorization: Bearer <key>' "
    "(create one with `aob keys create --tenant NAME`)"
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


TITLES = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests"}

# A WebSocket close reason is at most 123 bytes.
WS_UNAUTHORIZED = (
    'missing or unknown API key: send {"Authorization": "Bearer <key>"} in connection_init'
)
WS_UNAUTHORIZED_CODE = 4401
WS_FORBIDDEN = f"this API key lacks the {READ!r} scope"
WS_FORBIDDEN_CODE = 4403


class _KeyCheckingTransportWS(BaseGraphQLTransportWSHandler[ReadContext, None]):
    """Closes with 4401 and the reason when ``on_ws_connect`` finds no valid key, 4403 and
    the scope when the key may not read (Strawberry's own rejection closes with 4403
    "Forbidden", which says nothing)."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except Unauthenticated:
            await self.websocket.close(code=WS_UNAUTHORIZED_CODE, reason=WS_UNAUTHORIZED)
        except MissingScope:
            await self.websocket.close(code=WS_FORBIDDEN_CODE, reason=WS_FORBIDDEN)


class ReadRouter(GraphQLRouter[ReadContext, None]):
    graphql_transport_ws_handler_class = _KeyCheckingTransportWS

    async def on_ws_connect(self, context: ReadContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        header = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        if header is None:
            header = context.authorization  # the upgrade's, if it had a valid one
        principal = await authenticate(context.pool, header) if isinstance(header, str) else None
        if principal is None:
            raise Unauthenticated(WS_UNAUTHORIZED)
        if not principal.allows(READ):
            raise MissingScope(READ)
        context.tenant, context.authorization = principal.tenant, header
        return UNSET


def _wants_graphiql(request: HTTPConnection) -> bool:
    # Strawberry's own test for serving the IDE page (strawberry.http.base): only then may a
    # request without a key pass, and no query runs on such a request.
    accept = request.headers.get("accept", "")
    return (
        request.scope["type"] == "http"
        and request.scope["method"] == "GET"
        and request.query_params.get("query") is None
        and ("text/html" in accept or "*/*" in accept)
    )


def create_app(settings: Settings | None = None, api: QueryApiSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    api = api or QueryApiSettings()
    read_schema = check_schema_name(api.read_schema) if api.read_schema else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # api_keys lives in the default schema; created there, never in a read schema.
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            await ensure_auth_schema(conn)
            await ensure_node_types(conn)  # read by `nodeTypes`, written by the command API
        finally:
            await conn.close()
        server_settings = {"application_name": "aob-query-api"}
        if read_schema:
            server_settings["search_path"] = f"{read_schema}, public"
        pool = await create_pool(
            settings.postgres_dsn,
            min_size=1,
            max_size=api.pool_max_size,
            init=_init_connection,
            server_settings=server_settings,
        )
        # One LISTEN connection for the process: `after:` waits and subscriptions share it.
        listener = Listener(settings.postgres_dsn)
        watcher = ProgressWatcher(listener)
        run_changes = RunChanges(listener)
        # Its own connection: it vouches for the key cache (auth.revocations).
        revocations = RevocationListener.to(settings.postgres_dsn, "aob-query-api-keys")
        revocations.on_revoked(lambda _key_id: run_changes.wake_all())
        try:
            async with pool.acquire() as conn:
                # The read side must answer (empty) before the projector's first batch.
                await ensure_read_models(conn, read_schema)
            await listener.start()
            await revocations.start()
            app.state.pool = pool
            app.state.watcher = watcher
            app.state.run_changes = run_changes
            app.state.cas = ContentStore.from_settings(settings)
            yield
        finally:
            await revocations.stop()
            await listener.stop()
            await pool.close()

    buckets = TokenBuckets(api.rate_per_second, api.rate_burst)
    subscriptions = TenantSubscriptions(api.max_subscriptions_per_tenant)

    async def context(connection: HTTPConnection) -> ReadContext:
        # HTTPConnection: the same getter serves HTTP requests and WebSocket upgrades.
        state = connection.app.state
        authorization = connection.headers.get("authorization")
        principal = await authenticate(state.pool, authorization)
        websocket = connection.scope["type"] == "websocket"
        # A WebSocket may bring its key in connection_init instead: checked there.
        if principal is None and not websocket and not _wants_graphiql(connection):
            raise HTTPException(
                status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
            )
        # A WebSocket's key is judged at connection_init, where a refusal closes the socket.
        refused = principal is not None and not principal.allows(READ)
        if refused and not websocket and not _wants_graphiql(connection):
            raise HTTPException(status_code=403, detail=str(MissingScope(READ)))
        # Each HTTP query takes a token; a socket's subscriptions are counted instead.
        if principal is not None and not websocket:
            wait = buckets.take(principal.tenant)
            if wait > 0:
                raise HTTPException(
                    status_code=429,
                    detail=f"tenant {principal.tenant!r} is over its query rate "
                    f"({api.rate_per_second:g}/s, bursts of {api.rate_burst}); retry later",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return ReadContext(
            pool=state.pool,
            cas=state.cas,
            watcher=state.watcher,
            settings=api,
            tenant=principal.tenant if principal else "",
            nodes=nodes_loader(state.pool),
            patches=patches_loader(state.pool),
            versions=versions_loader(state.pool),
            approvals=approvals_loader(state.pool),
            events=events_loader(state.pool),
            run_changes=state.run_changes,
            authorization=authorization if principal else None,
            subscriptions=subscriptions,
        )

    app = FastAPI(title="AOB query API", lifespan=lifespan, docs_url=None, redoc_url=None)
    router = ReadRouter(
        build_schema(api),
        context_getter=context,
        graphql_ide="graphiql",
        # Only the current protocol: the legacy graphql-ws one had an auth bypass. This also
        # leaves out subscriptions over HTTP (multipart, SSE): WebSocket only.
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        # Counts every operation in flight on one socket, subscriptions or not.
        max_subscriptions_per_connection=api.max_subscriptions_per_connection,
    )
    app.include_router(router, prefix="/graphql")
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def problem(request: Request, exc: HTTPException) -> JSONResponse:
        # RFC 9457, as the command API answers.
        return JSONResponse(
            {
                "type": "about:blank",
                "title": TITLES.get(exc.status_code, "Error"),
                "status": exc.status_code,
                "detail": exc.detail,
            },
            status_code=exc.status_code,
            headers=exc.headers,
            media_type="application/problem+json",
        )

    mount_console(app, api.console_dir, api.console_command_api_url, settings.command_api_port)

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    return app
