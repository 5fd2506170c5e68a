"""``after: position``: wait until the projections have consumed past a command's event.

The projector stores the next offset to read per topic and partition in the same
transaction as the rows it writes, so "next_offset > offset" means the rows of that event
are committed and visible to any query that starts afterwards.
"""

from __future__ import annotations

import time

import asyncpg

from query_api.errors import BadPosition, NotCaughtUp
from query_api.progress import ProgressWatcher
from read_model.offsets import next_offset
from schemas.position import Position
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

EVENT_TOPICS = frozenset({RUN_EVENTS, WORKFLOW_EVENTS})


def parse_position(token: str) -> Position:
    """The position in ``token``; BadPosition says why when it is not one."""
    try:
        position = Position.parse(token)
    except ValueError as e:
        raise BadPosition(f"malformed position: {e}", token) from e
    if position.topic not in EVENT_TOPICS:
        raise BadPosition(
            f"malformed position: {token!r} is not on an event topic "
            f"({', '.join(sorted(EVENT_TOPICS))})",
            token,
        )
    return position


async def caught_up(pool: asyncpg.Pool, projection: str, position: Position) -> bool:
    stored = await next_offset(pool, projection, position.topic, position.partition)
    return stored is not None and stored > position.offset


async def wait_for(
    pool: asyncpg.Pool,
    watcher: ProgressWatcher,
    projection: str,
    position: Position,
    timeout: float,
) -> None:
    """Return once the read side includes ``position``; NotCaughtUp after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        ticket = watcher.ticket()
        if await caught_up(pool, projection, position):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotCaughtUp(
                f"the read side has not caught up with position {position.token()} yet; retry",
                position.token(),
            )
        await watcher.wait(ticket, remaining)
