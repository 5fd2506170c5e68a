"""The projector's memory of its runs (projections.known_runs) against the real PostgreSQL:
a run it wrote from its first event is not asked of PostgreSQL again, and one that another
writer extended meanwhile is written as if nothing was known."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.settings import Settings
from projections.batch import RawRecord
from projections.known_runs import KnownRuns
from projections.parking import apply_or_park
from read_model.schema import connect, ensure_schema
from schemas.codec import encode_event
from schemas.envelope import Event
from tests.connected.projections.test_projector_connected import _run_events

pytestmark = pytest.mark.connected

PROJECTION = "known-runs-test"


@pytest.fixture
async def conn(stack: Settings, unique: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"t_known_{unique[:16]}"
    conn = await connect(stack.postgres_dsn, schema)
    await ensure_schema(conn, schema)
    yield conn
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.close()


def _records(events: list[Event], first_offset: int) -> list[RawRecord]:
    return [
        RawRecord("runs", 0, first_offset + i, encode_event(ev)[1]) for i, ev in enumerate(events)
    ]


async def _written_once(conn: asyncpg.Connection, run_id: str, events: list[Event]) -> None:
    """Each of ``events`` is in ``run_events`` once, in order, numbered from 1; the run's row
    says how it ended."""
    rows = await conn.fetch(
        "SELECT seq, event_id FROM run_events WHERE run_id = $1 ORDER BY seq", run_id
    )
    distinct = list(dict.fromkeys(ev.event_id for ev in events))
    assert [(r["seq"], r["event_id"]) for r in rows] == list(enumerate(distinct, start=1))
    status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
    assert status == "COMPLETED"


def _statements(conn: asyncpg.Connection) -> list[str]:
    seen: list[str] = []
    conn.add_query_logger(lambda record: seen.append(record.query))
    return seen


async def test_a_run_written_from_its_first_event_is_answered_from_memory(
    conn: asyncpg.Connection,
) -> None:
    run_id = str(uuid.uuid4())
    events = _run_events(run_id, "tenant-known")  # its succeeded event comes twice
    known = KnownRuns()
    asked = _statements(conn)

    # Its start is in the batch: a run taken to have nothing written yet.
    await apply_or_park(conn, PROJECTION, _records(events[:3], 0), known=known)
    run = known.get(run_id)
    assert run is not None, "the batch wrote the run's first event"
    assert run.last_seq == 3

    # The rest, and the run's second event delivered again.
    applied = await apply_or_park(
        conn, PROJECTION, _records([*events[3:], events[1]], 3), known=known
    )
    assert not [q for q in asked if "FROM run_events" in q], "the run was asked of PostgreSQL"
    assert (applied.new_events, applied.duplicates) == (3, 2)

    await _written_once(conn, run_id, events)


async def test_a_known_run_that_another_writer_extended_is_written_from_postgres(
    conn: asyncpg.Connection,
) -> None:
    run_id = str(uuid.uuid4())
    events = _run_events(run_id, "tenant-known")
    known = KnownRuns()
    await apply_or_park(conn, PROJECTION, _records(events[:3], 0), known=known)
    assert known.get(run_id) is not None

    # Another writer (a projector with no memory) writes the run's next event.
    await apply_or_park(conn, PROJECTION, _records(events[3:4], 3))

    # What this one knows is behind: its insert finds the seq taken, and the batch is
    # applied again from what PostgreSQL holds.
    applied = await apply_or_park(conn, PROJECTION, _records(events[3:], 3), known=known)
    assert known.forgotten == 1
    assert known.get(run_id) is None, "a run with history it did not write is not learnt"
    assert (applied.new_events, applied.duplicates) == (2, 2)

    await _written_once(conn, run_id, events)


async def test_a_start_delivered_again_after_its_run_was_written_is_skipped(
    conn: asyncpg.Connection,
) -> None:
    run_id = str(uuid.uuid4())
    events = _run_events(run_id, "tenant-known")
    # A projector with no memory wrote the run's start (this one restarted since, say).
    await apply_or_park(conn, PROJECTION, _records(events[:3], 0))

    # Its run.submitted comes again with the rest: the run is taken to be new, and the
    # insert finds seq 1 taken; the batch is applied again from what PostgreSQL holds.
    known = KnownRuns()
    applied = await apply_or_park(
        conn, PROJECTION, _records([events[0], *events[3:]], 3), known=known
    )
    assert known.forgotten == 0, "nothing was known, so nothing to forget"
    assert known.get(run_id) is None
    assert (applied.new_events, applied.duplicates) == (3, 2)

    await _written_once(conn, run_id, events)
