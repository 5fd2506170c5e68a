"""Wake-ups when a projector commits a batch, over the process's one LISTEN connection.

The projector sends ``NOTIFY aob_projection_progress`` with every batch it commits. Every
request waiting for a position (``after:``) waits on a ticket here, instead of holding a
connection of its own for as long as it waits. While the LISTEN connection is down, waiters
poll (see ``query_api.listen``), so a lost notification can delay an answer by at most one
poll interval, never hang it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from query_api.listen import Listener
from read_model.channels import PROGRESS_CHANNEL

LISTENING_POLL_S = 1.0  # a safety net only: notifications do the real waking
DEAF_POLL_S = 0.05  # while the LISTEN connection is down


class ProgressWatcher:
    def __init__(self, listener: Listener | str) -> None:
        """On ``listener`` (shared), or on a connection of its own to a DSN."""
        self._owns = isinstance(listener, str)
        self._listener = Listener(listener) if isinstance(listener, str) else listener
        self._listener.on(PROGRESS_CHANNEL, self._wake_all)
        self._listener.on_connection_change(self._wake_all)
        self._changed = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._listener.listening

    async def start(self) -> None:
        if self._owns:
            await self._listener.start()

    async def stop(self) -> None:
        if self._owns:
            await self._listener.stop()

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
