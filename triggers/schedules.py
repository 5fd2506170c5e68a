"""When a schedule is due: its cadence (a cron expression in a time zone, or a fixed
interval), the moments after a given one, and what to fire after a gap.

Pure: no clock is read here; the coordinator's schedule clock (``processors.schedule_clock``)
gives ``now``. Cron expressions are parsed and stepped by ``cronsim`` (five fields, minute
resolution, in the schedule's time zone, DST handled as cron does: a moment that does not
exist that day fires as the clock jumps past it, one that exists twice fires once).
Intervals (``every``) are for periods cron cannot say (seconds): their moments are the
multiples of the interval since the Unix epoch, so they do not depend on when a schedule
was made or the clock last looked, and every process computes the same ones.

After downtime (a coordinator stopped for a while), the moments missed are not all fired:
``plan`` fires the latest ``catch_up`` of them (the coordinator's setting, 1 by default) and
reports the others as missed, so a schedule every 2 s that was down for an hour does not
start 1,800 runs at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

Overlap = Literal["skip", "allow"]
MIN_EVERY_S = 1
MAX_EVERY_S = 366 * 24 * 3600
# A gap longer than this many moments is counted no further (a cron schedule is stepped one
# moment at a time): the count of missed firings says "at least".
MAX_COUNTED = 100_000

_EVERY = re.compile(r"^\s*(\d{1,9})\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidSchedule(ValueError):
    """A cadence that cannot be a schedule's: the message says why."""


def parse_every(text: str) -> int:
    """Seconds of an interval written ``2s``, ``5m``, ``1h`` or ``1d``."""
    match = _EVERY.match(text)
    if match is None:
        raise InvalidSchedule(
            f"every {text!r}: write a whole number and a unit, s, m, h or d (2s, 5m, 1h)"
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not MIN_EVERY_S <= seconds <= MAX_EVERY_S:
        raise InvalidSchedule(f"every {text!r}: an interval is 1 s to 366 days")
    return seconds


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"time zone {name!r} is not one of the IANA database (e.g. UTC, Europe/Paris)"
        ) from None


@dataclass(frozen=True)
class Cadence:
    """A cron expression (``cron``) or an interval in seconds (``every_s``), never both."""

    cron: str | None = None
    every_s: int | None = None
    timezone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise InvalidSchedule("a schedule has a cron expression or an interval (every), one")
        object.__setattr__(self, "_zone", check_timezone(self.timezone))
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=self._zone))
            except CronSimError as e:
                raise InvalidSchedule(f"cron {self.cron!r}: {e}") from None
        elif not MIN_EVERY_S <= (self.every_s or 0) <= MAX_EVERY_S:
            raise InvalidSchedule("an interval is 1 s to 366 days")

    def after(self, moment: datetime) -> datetime:
        """The first moment of the schedule strictly after ``moment`` (UTC)."""
        if self.every_s is not None:
            epoch_s = int(moment.timestamp() // self.every_s + 1) * self.every_s
            return datetime.fromtimestamp(epoch_s, UTC)
        assert self.cron is not None
        local = moment.astimezone(self._zone)
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def at_or_before(self, now: datetime) -> datetime | None:
        """The latest moment at or before ``now`` (for an interval; None for cron, which is
        stepped forward)."""
        if self.every_s is None:
            return None
        return datetime.fromtimestamp(int(now.timestamp() // self.every_s) * self.every_s, UTC)


@dataclass(frozen=True)
class Plan:
    """What a look at the clock finds: the moments to fire, oldest first, and the moments
    missed beyond the catch-up (their number, the first and the last)."""

    fire: list[datetime]
    missed: int = 0
    first_missed: datetime | None = None
    last_missed: datetime | None = None


def plan(cadence: Cadence, since: datetime, now: datetime, catch_up: int) -> Plan:
    """The moments in (``since``, ``now``]: the latest ``catch_up`` (at least 1) to fire,
    the rest missed. ``since`` is the last moment fired (or the schedule's creation)."""
    keep = max(1, catch_up)
    if cadence.every_s is not None:
        last = cadence.at_or_before(now)
        assert last is not None
        step = timedelta(seconds=cadence.every_s)
        first = cadence.after(since)
        if last < first:
            return Plan([])
        count = int((last - first) / step) + 1
        fire = [last - step * i for i in reversed(range(min(keep, count)))]
        missed = count - len(fire)
        if not missed:
            return Plan(fire)
        return Plan(fire, missed, first, fire[0] - step)
    moments: list[datetime] = []
    counted = 0
    moment = cadence.after(since)
    while moment <= now and counted < MAX_COUNTED:
        moments.append(moment)
        moments = moments[-(keep + 1) :]
        counted += 1
        moment = cadence.after(moment)
    fire = moments[-keep:]
    missed = counted - len(fire)
    if not missed:
        return Plan(fire)
    first_missed = cadence.after(since)
    return Plan(fire, missed, first_missed, moments[-keep - 1])
