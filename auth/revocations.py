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
back. The connection, and its replacement when lost, are ``infra.pg_listen``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from auth.api_keys import KEYS, REVOCATION_CHANNEL
from auth.key_cache import CONFIRMED_WITHIN_S, KeyCache
from infra.pg_listen import Connect, ListenConnection, Listener, connect_to

HEARTBEAT_S = 0.4  # with its timeout, a confirmation every 0.9 s at worst
HEARTBEAT_TIMEOUT_S = CONFIRMED_WITHIN_S / 2


class RevocationListener(Listener):
    """Keeps ``cache`` told of revocations while it runs (``start``/``stop``)."""

    channel = REVOCATION_CHANNEL
    what = "key revocations"

    def __init__(self, connect: Connect, cache: KeyCache[Any] | None = None) -> None:
        super().__init__(connect)
        self._cache = KEYS if cache is None else cache
        self._on_revoked: list[Callable[[str], None]] = []

    @classmethod
    def to(cls, dsn: str, application_name: str) -> RevocationListener:
        """A listener on its own connection to ``dsn``, for this process's key cache."""
        return cls(connect_to(dsn, application_name))

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

    def heard(self, payload: str) -> None:
        self.revoked(payload)

    async def start(self) -> None:
        """Listen in the background; the cache is deaf until the first heartbeat answers."""
        self._cache.deaf()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        self._cache.deaf()

    def went_deaf(self) -> None:
        self._cache.deaf()

    async def serve(self, conn: ListenConnection, lost: asyncio.Event) -> None:
        """Heartbeat until the connection fails (the module doc)."""
        while not lost.is_set() and not conn.is_closed():
            await conn.fetchval("SELECT 1", timeout=HEARTBEAT_TIMEOUT_S)
            self._cache.confirm()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), HEARTBEAT_S)
