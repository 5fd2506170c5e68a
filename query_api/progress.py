"""Wake-ups when a projector commits a batch: one LISTEN connection per process.

The projector sends ``NOTIFY aob_projection_progress`` with every batch it commits. Every
request waiting for a position (``after:``) shares this one connection, instead of holding a
connection of its own for as long as it waits. If the connection is lost, waiters fall back
to polling while it is re-established in the background, so a lost notification can delay
an answer by at most one poll interval, never hang it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

PROGRESS_CHANNEL = "aob_projection_progress"  # the channel projections.store notifies
LISTENING_POLL_S = 1.0  # a safety net only: notifications do the real waking
DEAF_POLL_S = 0.05  # while the LISTEN connection is down


class ProgressWatcher:
    def __init__(self, dsn: str, channel: str = PROGRESS_CHANNEL) -> None:
        self._dsn = dsn
        self._channel = channel
        self._conn: asyncpg.Connection | None = None
        self._changed = asyncio.Event()
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        if not await self._connect():
            self._reconnect = asyncio.create_task(self._reconnect_loop())

    async def stop(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close(timeout=5)

    def ticket(self) -> asyncio.Event:
        """Take this before checking the offsets, then ``wait(ticket)``: a batch committed
        between the check and the wait still wakes the waiter."""
        return self._changed

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        poll = LISTENING_POLL_S if self.listening else DEAF_POLL_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), min(timeout, poll))

    def _wake_all(self, *_: Any) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    def _lost(self, *_: Any) -> None:
        self._wake_all()  # waiters go back to polling at once
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.create_task(self._reconnect_loop())

    async def _connect(self) -> bool:
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings={"application_name": "aob-query-api-listen"}
            )
            conn.add_termination_listener(self._lost)
            await conn.add_listener(self._channel, self._wake_all)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("LISTEN %s failed, polling until it works: %s", self._channel, e)
            return False
        self._conn = conn
        return True

    async def _reconnect_loop(self) -> None:
        delay = 0.2
        while not self._closed and not await self._connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
