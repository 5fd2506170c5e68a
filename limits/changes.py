"""Hearing of changed limits: a LISTEN connection (``infra.pg_listen``) that makes a
``LimitsStore`` forget a tenant's document the moment ``LimitsStore.put`` commits a new one,
in every process.

Unlike revoked keys (``auth.revocations``), nothing here needs a heartbeat: the store trusts
what it read for ``REMEMBER_S`` (a second) at most, so a lost or silent listener costs at
worst that second, never a stale limit for longer. On each new connection it forgets
everything (changes sent while it was away were not heard).
"""

from __future__ import annotations

import asyncio

from infra.pg_listen import Connect, ListenConnection, Listener, connect_to
from limits.store import CHANGES_CHANNEL, LimitsStore


class LimitsListener(Listener):
    """Keeps ``store`` told of changed limits while it runs (``start``/``stop``)."""

    channel = CHANGES_CHANNEL
    what = "changed limits"

    def __init__(self, connect: Connect, store: LimitsStore) -> None:
        super().__init__(connect)
        self._store = store

    @classmethod
    def to(cls, dsn: str, application_name: str, store: LimitsStore) -> LimitsListener:
        """A listener on its own connection to ``dsn``."""
        return cls(connect_to(dsn, application_name), store)

    def heard(self, payload: str) -> None:
        self._store.forget(payload)  # the tenant whose limits changed

    async def serve(self, conn: ListenConnection, lost: asyncio.Event) -> None:
        self._store.forget()  # what changed while nobody listened
        await lost.wait()
