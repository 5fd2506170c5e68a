"""The console: the web UI's built bundle, served at ``/console/`` by this API.

The bundle (``console/dist``, built by ``make setup`` with npm) is plain static files; the
page talks to AOB only through the public APIs: GraphQL on this same origin, REST on the
command API (which allows this origin: ``command_api.cors``). ``/console/config.json`` tells
the page where the command API is, since it listens on a port of its own.

Any other path under ``/console/`` that is not a file is one of the page's own routes (a
run, a workflow), so it is answered with ``index.html`` and the page draws it. Without a
built bundle, ``/console/`` answers 503 with how to build it, never a 500.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

PREFIX = "/console"
# The repository's console/dist, next to this package (an editable install, the Docker
# image's /app); AOB_QUERY_API_CONSOLE_DIR points elsewhere.
DEFAULT_DIST = Path(__file__).resolve().parent.parent / "console" / "dist"

NOT_BUILT = (
    "The console is not built: run `make setup` in the AOB repository (it runs "
    "`npm ci && npm run build` in console/, Node 20 or newer), then reload this page.\n"
    "Looked for {index}."
)


def _inside(root: Path, wanted: Path) -> bool:
    try:
        wanted.relative_to(root)
    except ValueError:
        return False
    return True


def mount_console(
    app: FastAPI, dist: Path | None, command_api_url: str | None, command_api_port: int
) -> None:
    """Serve the bundle in ``dist``. The page reaches the command API at ``command_api_url``,
    or, when that is not given, at the host the page itself was loaded from (the name the
    browser knows, whatever the services listen on) with the command API's port."""
    root = (dist or DEFAULT_DIST).resolve()

    @app.get(f"{PREFIX}/config.json", include_in_schema=False)
    async def console_config(request: Request) -> JSONResponse:
        url = command_api_url
        if not url:
            host = request.url.hostname or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            url = f"{request.url.scheme}://{host}:{command_api_port}"
        return JSONResponse({"commandApiUrl": url.rstrip("/"), "graphqlPath": "/graphql"})

    @app.get(PREFIX, include_in_schema=False)
    @app.get(PREFIX + "/{path:path}", include_in_schema=False)
    async def console_file(path: str = "") -> Response:
        index = root / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT.format(index=index), status_code=503)
        wanted = (root / path).resolve()
        if path and _inside(root, wanted) and wanted.is_file():
            # Vite names assets by their content's hash: they may be cached for good.
            cache = "public, max-age=31536000, immutable" if "/assets/" in f"/{path}" else None
            return FileResponse(wanted, headers={"Cache-Control": cache} if cache else None)
        if path.startswith("assets/"):
            return PlainTextResponse(f"no such console file: {path}", status_code=404)
        # The page's own routes (/console/runs/…): the page draws them.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})
