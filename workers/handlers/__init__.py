"""The handler registry: node type -> handler.

A node type with no handler here has no worker. Stateless handlers are plain functions in
``HANDLERS``; handlers that hold clients (an ``httpx.AsyncClient``, an ``AsyncOpenAI``) are
objects with ``__call__``, built by ``open_handlers`` with their clients injected and closed
when the worker stops.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from workers.handlers.base import WAITING, Handler, Job
from workers.handlers.condition import condition
from workers.handlers.noop import noop
from workers.handlers.transform import transform
from workers.http.client import open_http_handler
from workers.settings import WorkerSettings

HANDLERS: dict[str, Handler] = {
    "noop": noop,
    "transform": transform,
    "condition": condition,
}


async def open_handlers(settings: WorkerSettings, stack: AsyncExitStack) -> dict[str, Handler]:
    """Every handler this worker has, clients opened on ``stack`` (closed with it)."""
    handlers = dict(HANDLERS)
    handlers["http"] = await open_http_handler(settings, stack)
    return handlers


__all__ = ["HANDLERS", "WAITING", "Handler", "Job", "open_handlers"]
