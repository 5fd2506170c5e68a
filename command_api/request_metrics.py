"""Counting and timing every request of the command API (``command_api.metrics``).

Apart from the metrics themselves, which ``run_submission`` also counts with: starting a run
must not import a web framework (tests/unit/test_architecture.py).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from command_api.metrics import LATENCY, REQUESTS


class RequestMetrics:
    """Counts and times every HTTP request, by route, method and status.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) runs
    each request in a task group of its own and passes the response through a memory
    stream, which took about a fifth of the API's CPU per submission.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: what the server answers to an error

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router put the matched route in the scope as it went through.
            path = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(path, scope["method"]).observe(time.perf_counter() - started)
            REQUESTS.labels(path, scope["method"], str(status)).inc()
