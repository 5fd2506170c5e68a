"""Serving an AOB HTTP service (the command API, the query API) in the foreground.

Both run under uvicorn with the same options, so that they log alike: warnings and up, and no
access log (a line per request would drown the stack's logs under load).
"""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve ``app`` on ``host``:``port`` until the process is stopped."""
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
