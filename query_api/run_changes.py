"""Run-changed wake-ups for live subscriptions, fanned out from the one LISTEN connection.

The projector sends ``NOTIFY aob_run_changed, '<run_id>'`` once per run and committed batch.
A subscriber holds a ``Wakeup`` for its run: a flag, not a queue. However many
notifications arrive while it is busy sending, it wakes once and reads the run's latest
state, so a slow client costs one flag, never a growing backlog. When the LISTEN connection
is lost or comes back, every subscriber wakes (notifications may have been missed) and, while
it is down, each re-reads at a slow poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from query_api.listen import Listener
from read_model.channels import RUN_CHANNEL  # payload: the run id

LISTENING_POLL_S = 10.0  # a safety net only: notifications do the real waking
DEAF_POLL_S = 0.5  # while the LISTEN connection is down; slow, as many may be polling


class Wakeup:
    """Set by any number of notifications; ``wait`` consumes them all at once."""

    def __init__(self, hub: RunChanges) -> None:
        self._hub = hub
        self._flag = asyncio.Event()

    @property
    def pending(self) -> bool:
        """Whether a notification came since the last ``wait``."""
        return self._flag.is_set()

    def set(self) -> None:
        self._flag.set()

    async def wait(self) -> None:
        """Until a notification (or the poll interval); clears the flag before returning,
        so a change committed while the caller then reads wakes it again."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flag.wait(), self._hub.poll_s)
        self._flag.clear()


class RunChanges:
    def __init__(self, listener: Listener | None) -> None:
        """On ``listener``; without one (tests), only ``notify`` and polling wake."""
        self._listener = listener
        self._subscribers: dict[str, set[Wakeup]] = {}
        if listener is not None:
            listener.on(RUN_CHANNEL, self.notify)
            listener.on_connection_change(self.wake_all)

    @property
    def poll_s(self) -> float:
        listening = self._listener is not None and self._listener.listening
        return LISTENING_POLL_S if listening else DEAF_POLL_S

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    @contextlib.contextmanager
    def watch(self, run_id: str) -> Iterator[Wakeup]:
        """A wake-up for ``run_id``'s changes, registered for the ``with`` block. Enter it
        before the first read, so a change committed during that read is not missed."""
        wakeup = Wakeup(self)
        self._subscribers.setdefault(run_id, set()).add(wakeup)
        try:
            yield wakeup
        finally:
            subscribers = self._subscribers.get(run_id)
            if subscribers is not None:
                subscribers.discard(wakeup)
                if not subscribers:
                    del self._subscribers[run_id]

    def notify(self, run_id: str) -> None:
        for wakeup in self._subscribers.get(run_id, ()):
            wakeup.set()

    def wake_all(self) -> None:
        for subscribers in self._subscribers.values():
            for wakeup in subscribers:
                wakeup.set()
