"""faust's consumer, handing over a record without four tasks when nothing makes it wait.

faust's consumer gives each record it fetched to the topic's conductor with
``wait_first(deliver(record), suspend_flow.wait())``: it waits for the delivery, unless the
flow is suspended first (a rebalance). ``mode``'s ``wait_first`` starts a task for each of
those two and for the service's stopped and crashed events, waits for the first, and
cancels the other three: 16 µs a record on uvloop, where the delivery itself, most of the
time, finishes without ever waiting (the record is decoded and put on the stream's queue).
The coordinator reads every record of the run topic, its own decisions too, so this was
about a twelfth of its CPU.

``QuickDeliveryConsumer.wait_first`` first runs the delivery in place, up to its first wait.
If it finishes there, that is its result, as ``wait_first`` would have returned it. If it
waits (a full queue, flow control, the producer's buffer), it goes on as a task under
faust's own ``wait_first``, from where it stopped: suspending the flow, stopping or
crashing then cancel it as before. While the flow is suspended, stopping or crashed, or for
any other call, ``wait_first`` is faust's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from mode import Service
from mode.services import WaitResults
from mode.utils.times import Seconds


class _Yield:
    """Awaiting this yields ``value`` (what a suspended coroutine yielded) to the task."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, None]:
        yield self.value


async def _go_on(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Run ``coro``, suspended where it yielded ``yielded``, to its end in this task: what
    the task is sent or thrown goes on to ``coro``, as if the task had run it all along."""
    while True:
        try:
            await _Yield(yielded)
        except BaseException as e:  # noqa: BLE001 - whatever the task is thrown goes to coro
            try:
                yielded = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value


class QuickWaitFirst(Service):
    """``wait_first`` as the module doc says, for a service with a ``suspend_flow`` event."""

    suspend_flow: asyncio.Event

    async def wait_first(self, *coros: Any, timeout: Seconds | None = None) -> WaitResults:
        if timeout is not None:
            return await super().wait_first(*coros, timeout=timeout)
        if (
            len(coros) != 2  # the delivery, and the suspension of the flow
            or not asyncio.iscoroutine(coros[0])
            or not asyncio.iscoroutine(coros[1])
            or self.suspend_flow.is_set()
            or self._stopped.is_set()
            or self._crashed.is_set()
        ):
            return await super().wait_first(*coros)
        delivery, suspended = coros
        try:
            yielded = delivery.send(None)
        except StopIteration as done:
            suspended.close()  # never started: nothing to cancel
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            suspended.close()
            raise
        return await super().wait_first(_go_on(delivery, yielded), suspended)
