"""One LISTEN connection per process, shared by everything that waits on a notification.

Waiting requests (``run(after:)``) and live subscriptions must not hold a Postgres
connection each: they register a callback per channel here instead. If the connection is
lost, every ``on_change`` callback is told at once (so waiters re-read and fall back to
polling) and the connection is re-established in the background; when it is back, they are
told again, because notifications sent while it was down are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._channels: dict[str, Callable[[str], None]] = {}
        self._on_change: list[Callable[[], None]] = []
        self._conn: asyncpg.Connection | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    def on(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for every notification on ``channel`` (before start)."""
        self._channels[channel] = callback

    def on_connection_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the connection is lost and when it is back."""
        self._on_change.append(callback)

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

    def _changed(self) -> None:
        for callback in self._on_change:
            callback()

    def _lost(self, *_: Any) -> None:
        self._changed()  # waiters go back to polling at once
        if not self._closed and (self._reconnect is None or self._reconnect.done()):
            self._reconnect = asyncio.create_task(self._reconnect_loop())

    async def _connect(self) -> bool:
        conn = None
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings={"application_name": "aob-query-api-listen"}
            )
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, _payload_to(callback))
            conn.add_termination_listener(self._lost)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            log.warning("LISTEN %s failed, polling until it works: %s", sorted(self._channels), e)
            if conn is not None:
                conn.terminate()
            return False
        self._conn = conn
        self._changed()  # what was notified while nobody listened is read now
        return True

    async def _reconnect_loop(self) -> None:
        delay = 0.2
        while not self._closed and not await self._connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _payload_to(callback: Callable[[str], None]) -> Callable[..., None]:
    # asyncpg calls listeners with (connection, pid, channel, payload).
    def listener(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        callback(payload)

    return listener
