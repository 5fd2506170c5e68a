"""A schedule's moments: cron in its time zone (through cronsim), intervals from the epoch,
and what a look at the clock fires after a gap (the latest ``catch_up``, the rest missed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.schedule_clock import schedule_run_id
from triggers.schedules import Cadence, InvalidSchedule, parse_every, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "seconds"), [("2s", 2), ("5m", 300), ("1h", 3600), ("1d", 86400)])
def test_an_interval_is_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["2", "2 sec", "0s", "-1s", "1.5s", "400d"])
def test_an_interval_that_says_nothing_clear_is_refused(text: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_every(text)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "IANA"),
        ({}, "one"),
        ({"cron": "* * * * *", "every_s": 2}, "one"),
    ],
)
def test_a_bad_cadence_is_refused_with_its_reason(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidSchedule, match=reason):
        Cadence(**kwargs)  # type: ignore[arg-type]


def test_interval_moments_are_multiples_of_the_interval_since_the_epoch() -> None:
    every = Cadence(every_s=2)
    assert every.after(s(0)) == s(2)
    assert every.after(s(0.5)) == s(2)
    assert every.after(s(1.999)) == s(2)
    assert every.after(s(2)) == s(4)


def test_cron_reads_its_time_zone_across_a_dst_change() -> None:
    # Europe/Paris springs forward on 2026-03-29 at 02:00 local (01:00 UTC): 02:30 local
    # does not exist that day, and "30 2 * * *" fires as the clock jumps past it (03:00
    # CEST), as cron does; the next day at 02:30 CEST.
    paris = Cadence(cron="30 2 * * *", timezone="Europe/Paris")
    jumped = paris.after(datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert jumped == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert paris.after(jumped) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)
    winter = Cadence(cron="30 2 * * *", timezone="Europe/Paris")
    assert winter.after(datetime(2026, 1, 10, tzinfo=UTC)) == datetime(
        2026, 1, 10, 1, 30, tzinfo=UTC
    )
    assert Cadence(cron="*/5 * * * *").after(s(0)) == s(300)


def test_on_time_a_look_fires_the_moment_that_came() -> None:
    every = Cadence(every_s=2)
    assert plan(every, s(0), s(1.9), catch_up=1).fire == []
    assert plan(every, s(0), s(2), catch_up=1).fire == [s(2)]
    assert plan(every, s(2), s(3.5), catch_up=1).fire == []  # fired already


def test_after_a_gap_only_the_latest_catch_up_moments_fire_and_the_rest_are_missed() -> None:
    every = Cadence(every_s=2)
    one = plan(every, s(0), s(11), catch_up=1)  # moments 2, 4, 6, 8, 10
    assert one.fire == [s(10)]
    assert (one.missed, one.first_missed, one.last_missed) == (4, s(2), s(8))
    three = plan(every, s(0), s(11), catch_up=3)
    assert three.fire == [s(6), s(8), s(10)]
    assert (three.missed, three.first_missed, three.last_missed) == (2, s(2), s(4))
    assert plan(every, s(0), s(4), catch_up=3).fire == [s(2), s(4)]  # nothing missed


def test_cron_catch_up_is_the_same_rule() -> None:
    five = Cadence(cron="*/5 * * * *")
    gap = plan(five, s(0), s(21 * 60), catch_up=2)  # moments at 5, 10, 15, 20 minutes
    assert gap.fire == [s(15 * 60), s(20 * 60)]
    assert (gap.missed, gap.first_missed, gap.last_missed) == (2, s(300), s(600))


def test_a_moment_names_one_run_whoever_fires_it() -> None:
    assert schedule_run_id("sched-1", s(2)) == schedule_run_id("sched-1", s(2))
    assert schedule_run_id("sched-1", s(2)) != schedule_run_id("sched-1", s(4))
    assert schedule_run_id("sched-1", s(2)) != schedule_run_id("sched-2", s(2))
