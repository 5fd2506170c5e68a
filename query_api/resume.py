"""Where a ``runEvents`` subscription starts: after an event cursor, or after a log position.

An event cursor (as ``Run.events`` and ``runEvents`` issue them) names an event by its seq in
the run; a position token ``topic:partition:offset`` (as the command API answers) names a
place in the log. Both mean "the events after that one". The two are told apart by the
colon: a cursor is URL-safe base64, which has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from query_api.cursors import decode_cursor
from query_api.errors import BadCursor, BadPosition
from query_api.read_your_writes import parse_position
from schemas.position import Position
from schemas.topics import RUN_EVENTS


@dataclass(frozen=True)
class ResumeFrom:
    """The events with a seq above ``seq`` and, with ``position``, an offset above its one
    (a run's events are all on one partition, in log order)."""

    seq: int = 0
    position: Position | None = None

    @property
    def offset(self) -> int:
        return self.position.offset if self.position else -1


def parse_resume(after: str | None) -> ResumeFrom:
    """The start that ``after`` names; BadCursor or BadPosition says why it names none."""
    if not after:
        return ResumeFrom()
    if ":" in after:
        position = parse_position(after)
        if position.topic != RUN_EVENTS:
            raise BadPosition(
                f"position {after!r} is not on {RUN_EVENTS}, where runs' events are", after
            )
        return ResumeFrom(position=position)
    (seq,) = decode_cursor(after, 1)
    if not isinstance(seq, int) or seq < 0:
        raise BadCursor(f"cursor {after!r} is not an event cursor this API issued")
    return ResumeFrom(seq=seq)


def check_partition(start: ResumeFrom, run_id: str, partition: int | None) -> None:
    """BadPosition unless ``start``'s position is on the run's partition: offsets on two
    partitions say nothing about each other's order."""
    if start.position is None or partition is None or start.position.partition == partition:
        return
    raise BadPosition(
        f"position {start.position.token()!r} is on partition {start.position.partition}, "
        f"but run {run_id}'s events are on partition {partition}",
        start.position.token(),
    )
