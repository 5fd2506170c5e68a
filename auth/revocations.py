"""Hearing of revoked keys: a dedicated LISTEN connection per process that authenticates.

``auth.api_keys.revoke_key`` sends ``NOTIFY aob_api_keys, '<key id>'`` as the revocation
commits; this listener evicts that key from the process's ``KeyCache`` the moment the
notification arrives, so the next request with it asks PostgreSQL and is refused.

The cache trusts what it remembers for long only while this listener vouches for its
connection: every ``HEARTBEAT_S`` it runs a query on the LISTEN connection, and an answer
means every notification committed before it was delivered first (PostgreSQL sends pending
notifications before a query's result), so it ``confirm``s the cache. A lost connection
(closed, or a heartbeat that fails or takes too long: a silent network) makes the cache deaf
at once: it forgets everything and trusts answers for a second only, until the listener is
back. Reconnection is retried in the background with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from auth.api_keys import KEYS, REVOCATION_CHANNEL
from auth.key_cache import CONFIRMED_WITHIN_S, KeyCache

log = logging.getLogger("aob.auth")

HEARTBEAT_S = 0.4  # with its timeout, a confirmation every 0.9 s at worst
HEARTBEAT_TIMEOUT_S = CONFIRMED_WITHIN_S / 2
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0


class ListenConnection(Protocol):
    """What we use of an ``asyncpg.Connection``."""

    async def add_listener(self, channel: str, callback: Any) -> None: ...
    def add_termination_listener(self, callback: Any) -> None: ...
    async def fetchval(self, query: str, *args: object, timeout: float | None = None) -> Any: ...
    def is_closed(self) -> bool: ...
    def terminate(self) -> None: ...
    async def close(self, *, timeout: float | None = None) -> None: ...


class Connect(Protocol):
    async def __call__(self) -> ListenConnection: ...


class RevocationListener:
    """Keeps ``cache`` told of revocations while it runs (``start``/``stop``)."""

    def __init__(self, connect: Connect, cache: KeyCache[Any] | None = None) -> None:
        self._connect_to = connect
        self._cache = KEYS if cache is None else cache
        self._conn: ListenConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_revoked: list[Callable[[str], None]] = []

    @classmethod
    def to(cls, dsn: str, application_name: str) -> RevocationListener:
        """A listener on its own connection to ``dsn``, for this process's key cache."""

        async def connect() -> ListenConnection:
            import asyncpg

            conn: ListenConnection = await asyncpg.connect(
                dsn, server_settings={"application_name": application_name}
            )
            return conn

        return cls(connect)

    def on_revoked(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(key_id)`` after each revocation is evicted (the query API wakes
        its subscriptions with it, so that those of the key end now, not at their next
        message)."""
        self._on_revoked.append(callback)

    def revoked(self, key_id: str) -> None:
        """A key was revoked: forget it now, then tell whoever asked."""
        self._cache.evict(key_id)
        for callback in self._on_revoked:
            callback(key_id)

    async def start(self) -> None:
        """Listen in the background; the cache is deaf until the first heartbeat answers."""
        self._cache.deaf()
        self._task = asyncio.create_task(self._run(), name="aob-key-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._cache.deaf()

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                await self._listen()
                delay = RECONNECT_FIRST_S  # it ran, then was lost: try again soon
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: deaf, retry later
                log.warning("listening for key revocations failed, retrying: %r", e)
            finally:
                self._cache.deaf()
                self._drop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen(self) -> None:
        """One connection's life: listen, then heartbeat until it fails."""
        conn = self._conn = await self._connect_to()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda *_: lost.set())
        await conn.add_listener(REVOCATION_CHANNEL, self._on_notification)
        while not lost.is_set() and not conn.is_closed():
            await conn.fetchval("SELECT 1", timeout=HEARTBEAT_TIMEOUT_S)
            self._cache.confirm()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), HEARTBEAT_S)

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.revoked(payload)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
