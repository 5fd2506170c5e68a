"""processors.quick_delivery: a delivery that never waits is handed over in place, one that
waits goes on as a task under faust's own wait_first, from where it stopped."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from processors.quick_delivery import QuickWaitFirst


class Drainer(QuickWaitFirst):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


class Delivery:
    """A delivery that notes which task ran each of its parts, and how it ended."""

    def __init__(self, wait_for: asyncio.Future[Any] | None = None) -> None:
        self.wait_for = wait_for
        self.tasks: list[asyncio.Task[Any] | None] = []
        self.ended = ""

    async def __call__(self) -> str:
        self.tasks.append(asyncio.current_task())
        try:
            if self.wait_for is not None:
                got = await self.wait_for
                self.tasks.append(asyncio.current_task())
                await asyncio.sleep(0)  # a bare yield to the loop, too
                self.ended = f"after the wait: {got}"
                return "delivered late"
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise
        self.ended = "at once"
        return "delivered"


async def test_a_delivery_that_never_waits_is_handed_over_in_place() -> None:
    drainer, delivery = Drainer(), Delivery()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the suspension's coroutine is closed, not dropped
        result = await drainer.wait_first(delivery(), drainer.suspend_flow.wait())
    assert delivery.tasks == [asyncio.current_task()], "no task of its own"
    assert (len(result.done), result.results, result.stopped) == (1, ["delivered"], False)
    assert delivery.ended == "at once"


async def test_a_delivery_that_waits_goes_on_from_where_it_stopped() -> None:
    later: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    drainer, delivery = Drainer(), Delivery(wait_for=later)
    waiting = asyncio.ensure_future(drainer.wait_first(delivery(), drainer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    later.set_result("the queue had room")
    result = await asyncio.wait_for(waiting, 5)
    assert result.results == ["delivered late"]
    assert delivery.ended == "after the wait: the queue had room"
    first, second = delivery.tasks
    assert first is not second, "the rest ran as a task of its own"


async def test_suspending_the_flow_cancels_a_delivery_that_waits() -> None:
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    drainer, delivery = Drainer(), Delivery(wait_for=never)
    waiting = asyncio.ensure_future(drainer.wait_first(delivery(), drainer.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    drainer.suspend_flow.set()
    result = await asyncio.wait_for(waiting, 5)
    await asyncio.sleep(0)  # the cancellation reaches the delivery
    assert result.results == [True], "the suspension won"
    assert delivery.ended == "cancelled"
    assert never.cancelled(), "what it waited for is cancelled with it, as in a task"


async def test_a_delivery_that_fails_raises_whether_it_waited_or_not() -> None:
    async def fails_at_once() -> None:
        raise ValueError("undecodable")

    drainer = Drainer()
    with pytest.raises(ValueError, match="undecodable"):
        await drainer.wait_first(fails_at_once(), drainer.suspend_flow.wait())

    async def fails_later() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await drainer.wait_first(fails_later(), drainer.suspend_flow.wait())


async def test_while_the_flow_is_suspended_it_is_fausts_own_wait_first() -> None:
    drainer, delivery = Drainer(), Delivery()
    drainer.suspend_flow.set()
    await drainer.wait_first(delivery(), drainer.suspend_flow.wait())
    await asyncio.sleep(0.01)
    assert delivery.tasks, "faust's wait_first ran it"
    assert delivery.tasks[0] is not asyncio.current_task(), "as a task of its own"
