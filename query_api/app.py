"""The query API service: Strawberry GraphQL on FastAPI, GraphiQL in the browser.

Every request is authenticated with the same API keys as the command API and sees only its
tenant's workflows and runs; a missing or unknown key is a 401 answer, not a GraphQL error.
The GraphiQL page itself loads without a key (it is static and runs no query); every query
it sends needs one (set ``Authorization`` in GraphiQL's headers pane).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from auth import authenticate
from auth import ensure_schema as ensure_auth_schema
from cas import ContentStore
from infra.body_limit import BodyLimit
from infra.settings import Settings, get_settings
from projections.db import check_schema_name
from projections.db import ensure_schema as ensure_read_models
from query_api.context import ReadContext
from query_api.patch_types import patches_loader, versions_loader
from query_api.progress import ProgressWatcher
from query_api.schema import nodes_loader, schema
from query_api.settings import QueryApiSettings

UNAUTHORIZED = (
    "missing or unknown API key: send 'Authorization: Bearer <key>' "
    "(create one with `aob keys create --tenant NAME`)"
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _wants_graphiql(request: Request) -> bool:
    # Strawberry's own test for serving the IDE page (strawberry.http.base): only then may a
    # request without a key pass, and no query runs on such a request.
    accept = request.headers.get("accept", "")
    return (
        request.method == "GET"
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
        finally:
            await conn.close()
        server_settings = {"application_name": "aob-query-api"}
        if read_schema:
            server_settings["search_path"] = f"{read_schema}, public"
        pool = await asyncpg.create_pool(
            settings.postgres_dsn,
            min_size=1,
            max_size=api.pool_max_size,
            init=_init_connection,
            server_settings=server_settings,
        )
        watcher = ProgressWatcher(settings.postgres_dsn)
        try:
            async with pool.acquire() as conn:
                # The read side must answer (empty) before the projector's first batch.
                await ensure_read_models(conn, read_schema)
            await watcher.start()
            app.state.pool = pool
            app.state.watcher = watcher
            app.state.cas = ContentStore.from_settings(settings)
            yield
        finally:
            await watcher.stop()
            await pool.close()

    async def context(request: Request) -> ReadContext:
        state = request.app.state
        principal = await authenticate(state.pool, request.headers.get("authorization"))
        if principal is None and not _wants_graphiql(request):
            raise HTTPException(
                status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
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
        )

    app = FastAPI(title="AOB query API", lifespan=lifespan, docs_url=None, redoc_url=None)
    router = GraphQLRouter(
        schema,
        context_getter=context,
        graphql_ide="graphiql",
        # Only the current protocol: the legacy graphql-ws one had an auth bypass.
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
    )
    app.include_router(router, prefix="/graphql")
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def problem(request: Request, exc: HTTPException) -> JSONResponse:
        # RFC 9457, as the command API answers.
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Unauthorized" if exc.status_code == 401 else "Error",
                "status": exc.status_code,
                "detail": exc.detail,
            },
            status_code=exc.status_code,
            headers=exc.headers,
            media_type="application/problem+json",
        )

    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        await request.app.state.pool.fetchval("SELECT 1")
        return {"status": "ok"}

    return app
