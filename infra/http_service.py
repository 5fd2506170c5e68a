"""Serving an AOB HTTP service (the command API, the query API) in the foreground.

Both run under uvicorn with the same options, so that they log alike: warnings and up, and no
access log (a line per request would drown the stack's logs under load). Both run on uvloop
(``infra.event_loop``) and parse HTTP with httptools: uvicorn's pure-Python parser (h11) and
asyncio's loop cost the command API about a fifth more CPU per submission.
"""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve ``app`` on ``host``:``port`` until the process is stopped."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
