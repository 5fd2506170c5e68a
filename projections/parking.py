"""Records PostgreSQL refuses: found by halving the batch, parked, and the projector goes on.

A batch is one transaction, so one record that PostgreSQL refuses (a ``\\u0000`` in a
``jsonb`` value, a number out of range, a row over a limit) or that the fold cannot apply (a
bug met on one event) fails the whole batch, and retrying it fails again: the read side of
every tenant would stop behind one record. ``apply_or_park`` therefore applies the halves of
a failing batch on their own, down to the single record at fault. That record is tried a
few more times (``TRIES``; what looked like the record's fault may have been the moment's),
then parked in ``projection_poison`` with the reason, in a transaction that also moves the
offset past it. Its run's row says so in ``projection_error`` (GraphQL ``Run.projectionError``),
and subscribers are woken, so nobody waits for a change that will not come.

Only refusals that are about the data count (``REFUSED``): a lost connection, a deadlock,
a dropped table or an unreachable CAS are the moment's faults, and the runner retries the
batch whole from the stored offsets, as before. Halving keeps the log's order: the first
half is applied (and committed) before the second. A parked event is missing from the read
model until the bug is fixed and ``aob replay projections`` rebuilds it; the log still has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from projections.batch import RawRecord, decode_batch
from projections.known_runs import KnownRuns
from projections.store import Applied, apply_batch
from projections.version_blobs import JsonStore
from read_model.channels import PROGRESS_CHANNEL, RUN_CHANNEL
from read_model.offsets import store_offsets
from read_model.schema import lock_batches
from schemas.codec import decode_event
from schemas.errors import PoisonRecord
from schemas.events import RunSubmitted
from schemas.values import writable

log = logging.getLogger(__name__)

# The record's fault, not the moment's: PostgreSQL's data exceptions (class 22: a NUL, an
# untranslatable character, a value out of range), integrity violations (23) and program
# limits (54: a row or an index entry too large), and the Python errors the fold raises on
# an event it cannot apply.
REFUSED: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
    AssertionError,
)
TRIES = 3
RETRY_PAUSE_S = 0.1
MAX_REASON_CHARS = 2_000


async def apply_or_park(
    conn: asyncpg.Connection,
    projection: str,
    records: Sequence[RawRecord],
    cas: JsonStore | None = None,
    known: KnownRuns | None = None,
) -> Applied:
    """Apply ``records`` (in log order) as one batch; if the data is refused, apply its
    halves on their own and park the single records at fault (see the module doc).
    ``known``: what the live projector knows of its runs (``projections.known_runs``)."""
    try:
        return await apply_batch(conn, projection, decode_batch(records), cas, known)
    except REFUSED as e:
        if len(records) == 1:
            return await _retry_or_park(conn, projection, records[0], cas, e, known=known)
        log.warning("a batch of %d records was refused (%s): halving it", len(records), e)
    middle = len(records) // 2
    first = await apply_or_park(conn, projection, records[:middle], cas, known)
    second = await apply_or_park(conn, projection, records[middle:], cas, known)
    return Applied(
        first.new_events + second.new_events,
        first.duplicates + second.duplicates,
        first.poison + second.poison,
        first.runs_changed | second.runs_changed,
    )


async def _retry_or_park(
    conn: asyncpg.Connection,
    projection: str,
    record: RawRecord,
    cas: JsonStore | None,
    error: BaseException,
    *,
    known: KnownRuns | None,
) -> Applied:
    for _ in range(TRIES - 1):
        await asyncio.sleep(RETRY_PAUSE_S)
        try:
            return await apply_batch(conn, projection, decode_batch([record]), cas, known)
        except REFUSED as e:
            error = e
    return await park(conn, projection, record, _reason(error))


async def park(
    conn: asyncpg.Connection, projection: str, record: RawRecord, reason: str
) -> Applied:
    """Note ``record`` in ``projection_poison`` with ``reason``, move the offset past it,
    and mark its run's row; one transaction."""
    where = f"{record.topic}:{record.partition}:{record.offset}"
    log.error("the read model cannot take the record at %s: parked (%s)", where, reason)
    try:
        event = decode_event(record.value)
    except PoisonRecord:
        event = None
    run_id = None if event is None or event.type.startswith("workflow.") else event.aggregate_id
    async with conn.transaction():
        await lock_batches(conn)
        await conn.execute(
            """INSERT INTO projection_poison
                 (topic, partition, "offset", reason, event_id, event_type, aggregate_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
            record.topic,
            record.partition,
            record.offset,
            reason,
            None if event is None else event.event_id,
            None if event is None else event.type,
            None if event is None else event.aggregate_id,
        )
        await store_offsets(conn, projection, {(record.topic, record.partition): record.offset + 1})
        if event is not None and run_id is not None:
            note = f"the event {event.type} at {where} is not in the read model: {reason}"
            marked = await conn.fetchval(
                "UPDATE runs SET projection_error = $2 WHERE run_id = $1 RETURNING true",
                run_id,
                note[:MAX_REASON_CHARS],
            )
            if not marked and isinstance(event, RunSubmitted):
                await _placeholder(conn, event, note[:MAX_REASON_CHARS])
            await conn.execute("SELECT pg_notify($1, $2)", RUN_CHANNEL, run_id)
        await conn.execute("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, projection)
    return Applied(0, 0, 1, frozenset({run_id} if run_id else ()))


async def _placeholder(conn: asyncpg.Connection, event: RunSubmitted, note: str) -> None:
    """The row of a run whose submission could not be stored (its input, say): without
    it the run's later events would have no row to change, and the run would be invisible.
    Everything but what was refused is known from the event."""
    p = event.payload
    await conn.execute(
        """INSERT INTO runs (run_id, tenant, workflow_id, workflow_name, version, status,
                             created_at, updated_at, projection_error)
           VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $6, $7) ON CONFLICT DO NOTHING""",
        event.aggregate_id,
        event.actor.tenant,
        p.workflow_id,
        writable(p.workflow_name),
        p.version,
        event.occurred_at,
        note,
    )


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    detail = getattr(error, "detail", None)
    if detail:
        text += f" ({detail})"
    return writable(text)[:MAX_REASON_CHARS]
