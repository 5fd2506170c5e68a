"""The handler registry: node type -> handler.

A node type with no handler here has no worker; add one with ``register``. Handlers that need
clients (httpx, OpenAI) are objects with ``__call__``, built with their clients injected.
"""

from __future__ import annotations

from workers.handlers.base import Handler, Job
from workers.handlers.condition import condition
from workers.handlers.noop import noop
from workers.handlers.transform import transform

HANDLERS: dict[str, Handler] = {
    "noop": noop,
    "transform": transform,
    "condition": condition,
}


def register(node_type: str, handler: Handler) -> None:
    if node_type in HANDLERS and HANDLERS[node_type] is not handler:
        raise ValueError(f"node type {node_type!r} already has a handler")
    HANDLERS[node_type] = handler


__all__ = ["HANDLERS", "Handler", "Job", "register"]
