"""A LISTEN connection to PostgreSQL kept open in the background, for the processes that must
hear of a change the moment it commits (a revoked key: ``auth.revocations``; a tenant's new
limits: ``limits.changes``).

``start`` runs it, ``stop`` ends it. Each connection listens on ``channel`` and hands every
payload to ``heard``; ``serve`` then keeps the connection for as long as it lives (by
default: until it is lost). A failed or lost connection calls ``went_deaf`` (what was sent
meanwhile is not heard) and is replaced after a delay that grows from
``RECONNECT_FIRST_S`` to ``RECONNECT_MAX_S``, and is short again once a connection has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

log = logging.getLogger("aob.listen")

RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0


class ListenConnection(Protocol):
    """What we use of an ``asyncpg.Connection``."""

    async def add_listener(self, channel: str, callback: Any) -> None: ...
    def add_termination_listener(self, callback: Any) -> None: ...
    async def fetchval(self, query: str, *args: object, timeout: float | None = None) -> Any: ...
    def is_closed(self) -> bool: ...
    def terminate(self) -> None: ...


class Connect(Protocol):
    async def __call__(self) -> ListenConnection: ...


def connect_to(dsn: str, application_name: str) -> Connect:
    """Connections of their own to ``dsn``, named for ``pg_stat_activity``."""

    async def connect() -> ListenConnection:
        import asyncpg

        conn: ListenConnection = await asyncpg.connect(
            dsn, server_settings={"application_name": application_name}
        )
        return conn

    return connect


class Listener:
    """Listens on ``channel`` while it runs (the module doc); subclasses say what a payload
    means (``heard``), and may keep the connection busy (``serve``) or react to its loss
    (``went_deaf``)."""

    channel: str
    what: str  # for the log: "key revocations", "changed limits"

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._conn: ListenConnection | None = None
        self._task: asyncio.Task[None] | None = None

    def heard(self, payload: str) -> None:
        raise NotImplementedError

    async def serve(self, conn: ListenConnection, lost: asyncio.Event) -> None:
        """Keep ``conn`` until it is lost (``lost`` is set); return or raise to replace it."""
        await lost.wait()

    def went_deaf(self) -> None:
        """The connection failed or was lost: notifications may have been missed."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"aob-listen-{self.channel}")

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
            except Exception as e:  # noqa: BLE001 - any failure means: deaf, retry later
                log.warning("listening for %s failed, retrying: %r", self.what, e)
            finally:
                self.went_deaf()
                self._drop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen(self) -> None:
        """One connection's life."""
        conn = self._conn = await self._connect()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda *_: lost.set())
        await conn.add_listener(self.channel, self._on_notification)
        await self.serve(conn, lost)

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.heard(payload)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
