"""Building the http node: its one pooled client per worker process, and the handler."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx

from workers.http.guard import Guard
from workers.http.handler import HttpHandler
from workers.http.resolver import Resolver, SystemResolver
from workers.http.targets import parse_allowlist
from workers.http.transport import PinnedTransport
from workers.settings import WorkerSettings


def build_client(guard: Guard, *, max_connections: int = 100) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every request goes through ``guard``.

    ``follow_redirects=False``: the handler follows them, so each hop is checked.
    ``trust_env=False``: a proxy from the environment would get its own transport, and the
    request would leave without the guard.
    """
    return httpx.AsyncClient(
        transport=PinnedTransport(guard),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
    )


async def open_http_handler(
    settings: WorkerSettings, stack: AsyncExitStack, resolver: Resolver | None = None
) -> HttpHandler:
    """The handler, its client closed with ``stack``. InvalidAllowlist if the allowlist is
    malformed: the worker must not start with a policy other than the one meant."""
    guard = Guard(resolver or SystemResolver(), parse_allowlist(settings.http_allowlist))
    client = await stack.enter_async_context(build_client(guard))
    return HttpHandler(
        client,
        max_response_bytes=settings.http_max_response_bytes,
        default_timeout_s=settings.http_timeout_s,
    )
