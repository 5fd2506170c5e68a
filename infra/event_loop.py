"""The event loop of the coordinator, the projector and the HTTP APIs: uvloop's, not
asyncio's own.

Each service spends much of its CPU in the loop's plumbing rather than in AOB's code: waking
coroutines, scheduling callbacks, reading and writing sockets (Kafka's, PostgreSQL's, HTTP's).
uvloop does that work in C (on libuv), behind the same asyncio interface, so nothing else
changes. The command API's parser of HTTP requests is httptools' for the same reason
(``infra.http_service``). The coordinator and the projector call ``install`` as they start,
before they make a loop.

The workers stay on asyncio's loop: with uvloop, workers restarted after a SIGKILL twice
failed the crash tests in CI (one start exited during start-up; once the restarted workers
took no task for two minutes), which no run on asyncio's loop had done; the cause is not
known yet.
"""

from __future__ import annotations

import asyncio

import uvloop


def install() -> None:
    """Make every event loop this process creates from now on a uvloop one."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
