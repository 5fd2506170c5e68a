"""infra.coalesce: callers that wait on the same key at the same time share one round trip,
and none is answered by a round trip that began before it came."""

from __future__ import annotations

import asyncio

import pytest

from infra.coalesce import Coalesced


class Trips:
    """A ``run`` that notes each round trip's key and items, and can be held open."""

    def __init__(self) -> None:
        self.trips: list[tuple[str, list[int]]] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def __call__(self, key: str, items: list[int]) -> list[str]:
        self.trips.append((key, list(items)))
        failure, self.fail_with = self.fail_with, None  # this trip's, not the next one's
        if self.gate is not None:
            await self.gate.wait()
        if failure is not None:
            raise failure
        return [f"{key}:{item}" for item in items]


async def _turns() -> None:
    """A few turns of the event loop: what was started runs up to where it waits."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_of_one_moment_share_one_round_trip_and_get_their_own_answers() -> None:
    trips = Trips()
    coalesced = Coalesced(trips)
    answers = await asyncio.gather(*(coalesced("a", i) for i in range(5)))
    assert answers == [f"a:{i}" for i in range(5)]
    assert trips.trips == [("a", [0, 1, 2, 3, 4])]


async def test_keys_do_not_share() -> None:
    trips = Trips()
    coalesced = Coalesced(trips)
    answers = await asyncio.gather(coalesced("a", 1), coalesced("b", 2), coalesced("a", 3))
    assert answers == ["a:1", "b:2", "a:3"]
    assert sorted(trips.trips) == [("a", [1, 3]), ("b", [2])]


async def test_a_caller_that_comes_during_a_round_trip_waits_for_the_next() -> None:
    trips = Trips()
    trips.gate = asyncio.Event()
    coalesced = Coalesced(trips)
    first = asyncio.ensure_future(coalesced("a", 1))
    await _turns()
    assert trips.trips == [("a", [1])]  # under way
    later = [asyncio.ensure_future(coalesced("a", i)) for i in (2, 3)]
    await _turns()
    assert trips.trips == [("a", [1])]  # not answered by the trip that began before them
    trips.gate.set()
    assert await asyncio.gather(first, *later) == ["a:1", "a:2", "a:3"]
    assert trips.trips == [("a", [1]), ("a", [2, 3])]


async def test_a_round_trip_takes_most_at_once() -> None:
    trips = Trips()
    coalesced = Coalesced(trips, most_at_once=2)
    answers = await asyncio.gather(*(coalesced("a", i) for i in range(5)))
    assert answers == [f"a:{i}" for i in range(5)]
    assert trips.trips == [("a", [0, 1]), ("a", [2, 3]), ("a", [4])]


async def test_an_error_reaches_every_caller_of_its_round_trip_and_the_next_goes_on() -> None:
    trips = Trips()
    trips.gate = asyncio.Event()
    trips.fail_with = ConnectionError("the database went away")
    coalesced = Coalesced(trips)
    failing = [asyncio.ensure_future(coalesced("a", i)) for i in (1, 2)]
    await _turns()
    later = asyncio.ensure_future(coalesced("a", 3))
    await _turns()
    trips.gate.set()
    for caller in failing:
        with pytest.raises(ConnectionError):
            await caller
    assert await later == "a:3"


async def test_a_caller_gone_before_its_round_trip_is_left_out() -> None:
    trips = Trips()
    trips.gate = asyncio.Event()
    coalesced = Coalesced(trips)
    first = asyncio.ensure_future(coalesced("a", 1))
    await _turns()
    gone = asyncio.ensure_future(coalesced("a", 2))
    stays = asyncio.ensure_future(coalesced("a", 3))
    await _turns()
    gone.cancel()
    trips.gate.set()
    assert await asyncio.gather(first, stays) == ["a:1", "a:3"]
    assert trips.trips == [("a", [1]), ("a", [3])]


async def test_a_run_that_answers_too_few_fails_its_callers() -> None:
    async def short(key: str, items: list[int]) -> list[str]:
        return ["one"]

    coalesced = Coalesced(short)
    results = await asyncio.gather(coalesced("a", 1), coalesced("a", 2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
