"""Live subscriptions: a run as it changes, and its events as they are projected.

Each is a loop of "read, send what is new, sleep until the run changes": woken through
``RunChanges`` (the projector's coalesced NOTIFY), never by polling while the LISTEN
connection is up. Before every message the caller's key is checked again and the read is
scoped to the caller's tenant, so a revoked key or another tenant's run yields an error,
never data.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import asyncpg

from auth import authenticate
from auth.scopes import READ
from query_api import db
from query_api.context import ReadContext
from query_api.errors import MissingScope, NoSuchRun, Unauthenticated
from query_api.resume import check_partition, parse_resume
from query_api.run_changes import RunChanges
from run_model.state import RUN_FINISHED
from schemas.events import RunCancelled, RunCompleted, RunFailed

TERMINAL_EVENTS = frozenset({RunCompleted.wire_name, RunFailed.wire_name, RunCancelled.wire_name})
EVENT_BATCH = 100  # events read per query while catching up


async def authorise(ctx: ReadContext) -> str:
    """The caller's tenant, if the key it connected with is still valid and may read. Asked
    through the process's key cache, which forgets a key the moment it is revoked
    (``auth.revocations``): a revoked key's subscription ends at its next message."""
    principal = await authenticate(ctx.pool, ctx.authorization)
    if principal is None or principal.tenant != ctx.tenant:
        raise Unauthenticated(
            "the API key is unknown or no longer valid: reconnect with a valid one"
        )
    if not principal.allows(READ):
        raise MissingScope(READ)
    return principal.tenant


async def _owned_run(ctx: ReadContext, run_id: str) -> asyncpg.Record:
    row = await db.run_state(ctx.pool, await authorise(ctx), run_id)
    if row is None:
        raise NoSuchRun(run_id)
    return row


def _hub(ctx: ReadContext) -> RunChanges:
    # Without a hub (a context built by hand), a subscription still ends: it polls.
    return ctx.run_changes or RunChanges(None)


def seen_by_client(row: Any) -> tuple[Any, ...]:
    """What tells two reads of a run apart for a client: every projected event moves the
    count, and status and updatedAt are what it shows of them."""
    return (row["status"], row["updated_at"], row["event_count"])


async def run_updates(ctx: ReadContext, run_id: str) -> AsyncGenerator[asyncpg.Record, None]:
    """The run now, then after each change a client can see; ends after a terminal one."""
    with _hub(ctx).watch(run_id) as wakeup:
        sent: tuple[Any, ...] | None = None
        while True:
            row = await _owned_run(ctx, run_id)
            if seen_by_client(row) != sent:
                sent = seen_by_client(row)
                ctx.forget_run(run_id)
                yield row
            if row["status"] in RUN_FINISHED:
                return
            await wakeup.wait()


async def run_events(
    ctx: ReadContext, run_id: str, after: str | None
) -> AsyncGenerator[asyncpg.Record, None]:
    """The run's events after ``after`` (a cursor or a position) in seq order, then each new
    one as it is projected; ends after the run's terminal event."""
    start = parse_resume(after)
    with _hub(ctx).watch(run_id) as wakeup:
        run = await _owned_run(ctx, run_id)
        check_partition(start, run_id, await db.run_partition(ctx.pool, ctx.tenant, run_id))
        seq, offset = start.seq, start.offset
        while True:
            # The run was read before its events: if it was terminal then, its terminal
            # event is committed and among these rows, or was at or before ``after``.
            rows = await db.events_after(
                ctx.pool, ctx.tenant, run_id, seq=seq, offset=offset, limit=EVENT_BATCH
            )
            for row in rows:
                await authorise(ctx)
                yield row
                seq = row["seq"]
                if row["type"] in TERMINAL_EVENTS:
                    return
            if len(rows) == EVENT_BATCH:
                continue  # catching up: no need to wait for what is already there
            if run["status"] in RUN_FINISHED:
                return
            await wakeup.wait()
            run = await _owned_run(ctx, run_id)
