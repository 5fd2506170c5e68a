"""Hearing of changed limits: a LISTEN connection that makes a ``LimitsStore`` forget a
tenant's document the moment ``LimitsStore.put`` commits a new one, in every process.

Unlike revoked keys (``auth.revocations``), nothing here needs a heartbeat: the store trusts
what it read for ``REMEMBER_S`` (a second) at most, so a lost or silent listener costs at
worst that second, never a stale limit for longer. While it is down it reconnects in the
background with a growing delay, and on each connection it forgets everything (changes
sent while it was away were not heard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from limits.store import CHANGES_CHANNEL, LimitsStore

log = logging.getLogger("aob.limits")

RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0


class ListenConnection(Protocol):
    """What we use of an ``asyncpg.Connection``."""

    async def add_listener(self, channel: str, callback: Any) -> None: ...
    def add_termination_listener(self, callback: Any) -> None: ...
    def is_closed(self) -> bool: ...
    def terminate(self) -> None: ...


class Connect(Protocol):
    async def __call__(self) -> ListenConnection: ...


class LimitsListener:
    """Keeps ``store`` told of changed limits while it runs (``start``/``stop``)."""

    def __init__(self, connect: Connect, store: LimitsStore) -> None:
        self._connect = connect
        self._store = store
        self._conn: ListenConnection | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def to(cls, dsn: str, application_name: str, store: LimitsStore) -> LimitsListener:
        """A listener on its own connection to ``dsn``."""

        async def connect() -> ListenConnection:
            import asyncpg

            conn: ListenConnection = await asyncpg.connect(
                dsn, server_settings={"application_name": application_name}
            )
            return conn

        return cls(connect, store)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="aob-limits-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                await self._listen()
                delay = RECONNECT_FIRST_S  # it ran, then was lost: try again soon
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure means: retry later
                log.warning("listening for changed limits failed, retrying: %r", e)
            finally:
                self._drop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen(self) -> None:
        """One connection's life: listen until it is lost."""
        conn = self._conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda *_: lost.set())
        await conn.add_listener(CHANGES_CHANNEL, self._on_notification)
        self._store.forget()  # what changed while nobody listened
        await lost.wait()

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, tenant: str) -> None:
        self._store.forget(tenant)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
