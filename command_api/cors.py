"""Which web pages may call the command API from a browser (CORS).

The console is served by the query API (``/console/``), so it runs on the query API's origin
and calls this API on another port: a cross-origin request, which a browser sends only after
a preflight that this API must answer. The origins allowed are the query API's own (under
both loopback names) unless ``AOB_COMMAND_API_CORS_ORIGINS`` lists others (comma-separated;
empty: none). Requests carry the key in ``Authorization``, never a cookie, so credentials
are not allowed: a page that is not the console gets nothing it could not get with curl.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from infra.settings import Settings

# What the console sends: its key, JSON bodies, and an Idempotency-Key on commands.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
# What it may read back besides the simple headers: how long to wait after a 429.
EXPOSED_HEADERS = ["Retry-After"]


def console_origins(settings: Settings, configured: str | None) -> list[str]:
    """The origins allowed: ``configured`` when given, else the query API's origins."""
    if configured is not None:
        return [o.strip().rstrip("/") for o in configured.split(",") if o.strip()]
    port = settings.query_api_port
    hosts = {settings.host, "127.0.0.1", "localhost"}
    return sorted(f"http://{host}:{port}" for host in hosts)


def allow_console(app: FastAPI, settings: Settings, configured: str | None) -> None:
    origins = console_origins(settings, configured)
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
