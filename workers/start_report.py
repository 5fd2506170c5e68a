"""When a worker tells the log that an attempt started.

Every outcome of an attempt, ``run.node_succeeded`` or ``run.node_failed``, carries
``started_at``; a quick attempt's start is told by it alone, and no ``run.node_started`` is
sent. An attempt still going after ``after_s`` (``AOB_WORKERS_REPORT_START_AFTER_MS``), or that
reports anything else first (an approval request, a model call, progress, a wait), sends its
``run.node_started`` then, stamped with when it really started: a person watching sees a
long attempt RUNNING, and the coordinator counts the attempt's deadline from its real start.
Temporal does the same with an activity's start, which reaches the history with its
completion.

Why: a no-op node's start was one of the three records a node adds to the run's stream, and
the coordinator decodes, folds and stores each one, the projector writes each one, the broker
keeps each one. A worker that crashes before the outcome has not committed the task either,
so the task runs again, and its start is told then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from schemas.envelope import Event, utcnow
from schemas.events import NodeFailed, NodeStarted, NodeSucceeded

Send = Callable[[Event], Awaitable[object]]
Started = Callable[[datetime], NodeStarted]  # the attempt's run.node_started, started then

# Long enough for a no-op, an in-process transform or a call to a nearby service to end
# first; short enough that a person sees a slow attempt RUNNING at once.
DEFAULT_REPORT_START_AFTER_S = 0.1


def with_start(outcome: Event, started_at: datetime) -> Event:
    """``outcome`` (a NodeSucceeded or NodeFailed) telling when its attempt started."""
    payload = outcome.payload.model_copy(update={"started_at": started_at})
    return outcome.model_copy(update={"payload": payload})


class StartReport:
    """One attempt's ``run.node_started``: sent after ``after_s`` (at once if 0), or before
    the attempt's first other report; never if its outcome comes first, which tells it.
    The event is made only to be sent (``started`` makes it): most attempts never send it."""

    def __init__(self, started: Started, send: Send, after_s: float) -> None:
        self.started_at = utcnow()
        self._started = started
        self._event: NodeStarted | None = None
        self._send = send
        self._sent: asyncio.Future[object] | None = None
        self._told_with_outcome = False
        self._timer: asyncio.TimerHandle | None = None
        if after_s <= 0:
            self.send()
        else:
            self._timer = asyncio.get_running_loop().call_later(after_s, self.send)

    @property
    def event(self) -> NodeStarted:
        if self._event is None:
            self._event = self._started(self.started_at)
        return self._event

    def send(self) -> None:
        """Send the start now, unless it was sent, or told with the outcome, already."""
        self._stop_timer()
        if self._sent is None and not self._told_with_outcome:
            self._sent = asyncio.ensure_future(self._send(self.event))

    async def before(self, report: Event) -> Event:
        """What to send for ``report``, a report of this attempt. An outcome always tells
        the start: a start sent on its own may still be on its way (or be retried) and
        reach the log after the outcome, where the read model no longer takes it. Anything
        else goes after the start is in the log."""
        if isinstance(report, NodeSucceeded | NodeFailed):
            if self._sent is None:
                self._stop_timer()
                self._told_with_outcome = True
            return with_start(report, self.started_at)
        await self.settle()
        return report

    async def settle(self) -> None:
        """Wait until the start is in the log, sending it now if nothing told it yet (a
        handler that returned to wait elsewhere without reporting anything)."""
        self.send()
        if self._sent is not None:
            await self._sent

    def cancel(self) -> None:
        """The attempt ends without a report (its task will be done again)."""
        self._stop_timer()
        if self._sent is not None:
            self._sent.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
