"""The event loop every AOB service runs on: uvloop's, not asyncio's own.

Each service spends much of its CPU in the loop's plumbing rather than in AOB's code: waking
coroutines, scheduling callbacks, reading and writing sockets (Kafka's, PostgreSQL's, HTTP's).
uvloop does that work in C (on libuv), behind the same asyncio interface, so nothing else
changes. The command API's parser of HTTP requests is httptools' for the same reason
(``infra.http_service``). Every service calls ``install`` as it starts, before it makes a loop.
"""

from __future__ import annotations

import asyncio

import uvloop


def install() -> None:
    """Make every event loop this process creates from now on a uvloop one."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
