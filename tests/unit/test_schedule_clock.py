"""The schedule clock's part of a firing, without servers: what it appends, submits and
records for the moments ``plan`` finds (fired, missed beyond the catch-up, skipped for an
unfinished previous run or a refused submission), and that every id derives from the moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from command_api.errors import RateLimited
from processors import schedule_clock
from processors.schedule_clock import ScheduleClock, schedule_run_id
from schemas.envelope import Event
from schemas.events import ScheduleFired, ScheduleSkipped
from triggers.schedule_store import Schedule

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Store:
    """The ``record`` half of ``ScheduleStore``, in memory."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, str, str | None, str | None, int]] = []

    async def record(
        self,
        schedule_id: str,
        due_at: datetime,
        outcome: str,
        run_id: str | None,
        reason: str | None = None,
        count: int = 1,
    ) -> None:
        self.rows.append((due_at, outcome, run_id, reason, count))


class World:
    """What the clock appends and submits, and which runs are finished."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: bool = False) -> None:
        self.appended: list[Event] = []
        self.submitted: list[tuple[str, str | None]] = []
        self.finished: set[str] = set()

        async def append(ctx: Any, topic: str, event: Event, *args: Any) -> str:
            self.appended.append(event)
            return "t:0:0"

        async def start_run(ctx: Any, tenant: str, actor: Any, command: Any, **ids: Any) -> Any:
            if refuse:
                raise RateLimited("tenant t: tier light allows 1 submission a minute", 3)
            self.submitted.append((ids["run_id"], ids["event_id"]))
            return None, "t:0:1"

        async def finished(ctx: Any, run_id: str) -> bool:
            return run_id in self.finished

        monkeypatch.setattr(schedule_clock, "append_event", append)
        monkeypatch.setattr(schedule_clock, "start_run", start_run)
        monkeypatch.setattr(schedule_clock, "_finished", finished)


def schedule(
    overlap: str = "allow", last_due: datetime | None = None, last_run: str | None = None
) -> Schedule:
    return Schedule(
        schedule_id="s-1",
        tenant="t",
        workflow="w",
        cron=None,
        every_s=2,
        timezone="UTC",
        overlap=overlap,
        input={"n": 1},
        status="active",
        created_at=at(0),
        last_due=last_due,
        last_run_id=last_run,
    )


def clock(now: datetime, catch_up: int = 1) -> ScheduleClock:
    return ScheduleClock("dsn", "bootstrap", None, lambda: now, catch_up)


async def test_a_moment_that_came_is_fired_and_submitted_under_ids_of_the_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, store = World(monkeypatch), Store()
    fired = await clock(at(2.1))._handle(None, store, schedule())  # type: ignore[arg-type]
    assert fired == 1
    (event,) = world.appended
    assert isinstance(event, ScheduleFired)
    run_id = schedule_run_id("s-1", at(2))
    assert (event.payload.due_at, event.payload.run_id) == (at(2), run_id)
    assert [r for r, _ in world.submitted] == [run_id]
    assert store.rows == [(at(2), "fired", run_id, None, 1)]
    # The same moment fired again (a restart before it was recorded): the same ids.
    again = World(monkeypatch)
    await clock(at(2.1))._handle(None, Store(), schedule())  # type: ignore[arg-type]
    assert again.appended[0].event_id == event.event_id
    assert again.submitted == world.submitted


async def test_after_a_gap_the_latest_moment_fires_and_the_rest_are_recorded_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, store = World(monkeypatch), Store()
    await clock(at(11))._handle(None, store, schedule(last_due=at(2)))  # type: ignore[arg-type]
    # Moments 4, 6, 8 missed; 10 fired.
    assert [type(e).__name__ for e in world.appended] == ["ScheduleSkipped", "ScheduleFired"]
    missed = world.appended[0]
    assert isinstance(missed, ScheduleSkipped)
    assert (missed.payload.count, missed.payload.first_due_at, missed.payload.due_at) == (
        3,
        at(4),
        at(8),
    )
    assert [(r[0], r[1], r[4]) for r in store.rows] == [(at(8), "missed", 3), (at(10), "fired", 1)]
    assert [r for r, _ in world.submitted] == [schedule_run_id("s-1", at(10))]


async def test_overlap_skip_starts_nothing_while_the_previous_run_is_unfinished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, store = World(monkeypatch), Store()
    busy = schedule("skip", last_due=at(2), last_run="run-2")
    assert await clock(at(4.1))._handle(None, store, busy) == 0  # type: ignore[arg-type]
    assert world.submitted == []
    assert store.rows[0][1] == "skipped" and "run-2 is unfinished" in str(store.rows[0][3])
    world.finished.add("run-2")
    assert await clock(at(4.1))._handle(None, Store(), busy) == 1  # type: ignore[arg-type]


async def test_a_refused_submission_is_recorded_as_skipped_with_the_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    World(monkeypatch, refuse=True)
    store = Store()
    assert await clock(at(2.1))._handle(None, store, schedule()) == 0  # type: ignore[arg-type]
    ((due, outcome, run_id, reason, _),) = store.rows
    assert (due, outcome, run_id) == (at(2), "skipped", None)
    assert "allows 1 submission a minute" in str(reason)
