"""The coordinator's schedule clock: fires each schedule's moments as they come.

Every ``schedule_interval_s`` it reads the active schedules (``triggers.schedule_store``),
and for each asks ``triggers.schedules.plan`` what came since the last moment handled: the
moments to fire (the latest ``schedule_catch_up`` of those missed while no clock ran) and the
moments missed beyond that. For a moment to fire, in this order:

1. ``schedule.fired`` is appended (or ``schedule.skipped`` when overlap is ``skip`` and the
   schedule's previous run is unfinished in the read model; a run the read model does not
   show yet counts as unfinished);
2. the run is submitted as ``POST /v1/runs`` submits one (``run_submission.start_run``:
   the workflow's latest version, the tenant's admission limits), by the schedule's tenant,
   as the system actor ``schedule/<id>``;
3. the moment is recorded, and the schedule's ``last_due`` moves on to it.

The event's id and the run's id derive from (schedule id, moment). A clock that stops
between 1 and 3 finds the moment again when it starts, and appends the same event and the
same run.submitted (same ids), which every consumer drops as duplicates: a moment is never
doubled, across any number of restarts. A refused submission (the workflow deleted, a full
admission) is recorded as skipped with the refusal's reason.

One clock fires at a time: it holds a PostgreSQL advisory lock on a connection of its own,
and a second coordinator's clock stays quiet until the first one's connection is gone (its
process died). Were two to fire anyway, the ids above keep it to one firing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from command_api.errors import CommandError
from infra.bus import EventBus
from run_submission import SubmissionPorts, append_event, start_run
from schemas import SubmitRun
from schemas.envelope import Actor, Event, Payload, build_event, deterministic_id
from schemas.events import (
    ScheduleFired,
    ScheduleFiredPayload,
    ScheduleSkipped,
    ScheduleSkippedPayload,
)
from schemas.topics import WORKFLOW_EVENTS
from triggers.schedule_store import Schedule, ScheduleStore
from triggers.schedules import plan

log = logging.getLogger("aob.coordinator.schedules")

Clock = Callable[[], datetime]
# The advisory lock a schedule clock holds while it fires ("AOB sched" in ASCII).
CLOCK_LOCK = 0x414F4220_73636864
FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


def schedule_run_id(schedule_id: str, due_at: datetime) -> str:
    """The run a schedule's moment starts: the same for every firing of that moment."""
    return deterministic_id("schedule-run", schedule_id, due_at.isoformat())


def _actor(schedule: Schedule) -> Actor:
    return Actor(kind="system", id=f"schedule/{schedule.schedule_id}", tenant=schedule.tenant)


class ScheduleClock:
    def __init__(
        self,
        dsn: str,
        kafka_bootstrap: str,
        cas: Any,
        clock: Clock,
        catch_up: int,
    ) -> None:
        self.dsn, self.kafka_bootstrap, self.cas = dsn, kafka_bootstrap, cas
        self.clock = clock
        self.catch_up = catch_up
        self._ctx: SubmissionPorts | None = None
        self._store: ScheduleStore | None = None
        self._lock_conn: asyncpg.Connection | None = None
        self.fired_total = 0

    async def _start(self) -> tuple[SubmissionPorts, ScheduleStore]:
        if self._ctx is None or self._store is None:
            pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
            bus = EventBus(self.kafka_bootstrap, client_id="aob-schedule-clock")
            await bus.start()
            self._ctx = SubmissionPorts(pool=pool, bus=bus, cas=self.cas)
            self._store = ScheduleStore(pool)
            await self._store.ensure_schema()
        return self._ctx, self._store

    async def _leads(self) -> bool:
        """Whether this clock holds the lock (taking it if it is free)."""
        if self._lock_conn is not None and not self._lock_conn.is_closed():
            return True
        conn = await asyncpg.connect(self.dsn)
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLOCK_LOCK):
            self._lock_conn = conn
            log.info("schedule clock: this coordinator fires the schedules")
            return True
        await conn.close()
        return False

    async def stop(self) -> None:
        if self._lock_conn is not None:
            await self._lock_conn.close()
        if self._ctx is not None:
            await self._ctx.bus.stop()
            await self._ctx.pool.close()

    async def tick(self) -> int:
        """Fire what is due; returns how many runs were submitted."""
        ctx, store = await self._start()
        if not await self._leads():
            return 0
        fired = 0
        for schedule in await store.active():
            try:
                fired += await self._handle(ctx, store, schedule)
            except (OSError, asyncpg.PostgresError) as e:  # the next tick tries again
                log.warning("schedule %s: %s", schedule.schedule_id, e)
        self.fired_total += fired
        return fired

    async def _handle(self, ctx: SubmissionPorts, store: ScheduleStore, schedule: Schedule) -> int:
        now = self.clock()
        found = plan(schedule.cadence, schedule.since, now, self.catch_up)
        if found.missed and found.last_missed is not None:
            reason = (
                f"{found.missed} moments missed while no schedule clock ran; the latest "
                f"{self.catch_up} are caught up (AOB_COORDINATOR_SCHEDULE_CATCH_UP)"
            )
            await self._skip(ctx, store, schedule, found.last_missed, reason, found)
        fired = 0
        last_run = schedule.last_run_id
        for due in found.fire:
            if schedule.overlap == "skip" and last_run and not await _finished(ctx, last_run):
                reason = f"the previous run {last_run} is unfinished (overlap: skip)"
                await self._skip(ctx, store, schedule, due, reason)
                continue
            run_id = schedule_run_id(schedule.schedule_id, due)
            await self._append(
                ctx,
                schedule,
                ScheduleFired,
                ScheduleFiredPayload(schedule_id=schedule.schedule_id, due_at=due, run_id=run_id),
                deterministic_id("schedule-fired", schedule.schedule_id, due.isoformat()),
            )
            try:
                await start_run(
                    ctx,
                    schedule.tenant,
                    _actor(schedule),
                    SubmitRun(workflow_id=schedule.workflow, input=schedule.input),
                    run_id=run_id,
                    event_id=deterministic_id(
                        "schedule-submit", schedule.schedule_id, due.isoformat()
                    ),
                )
            except CommandError as e:
                await self._skip(ctx, store, schedule, due, f"the run was refused: {e.detail}")
                continue
            await store.record(schedule.schedule_id, due, "fired", run_id)
            last_run = run_id
            fired += 1
        return fired

    async def _skip(  # noqa: PLR0917
        self,
        ctx: SubmissionPorts,
        store: ScheduleStore,
        schedule: Schedule,
        due: datetime,
        reason: str,
        missed: Any = None,
    ) -> None:
        count = missed.missed if missed is not None else 1
        first = missed.first_missed if missed is not None else None
        payload = ScheduleSkippedPayload(
            schedule_id=schedule.schedule_id,
            due_at=due,
            reason=reason,
            count=count,
            first_due_at=first,
        )
        event_id = deterministic_id("schedule-skipped", schedule.schedule_id, due.isoformat())
        await self._append(ctx, schedule, ScheduleSkipped, payload, event_id)
        await store.record(
            schedule.schedule_id, due, "missed" if missed else "skipped", None, reason, count
        )

    async def _append(
        self,
        ctx: SubmissionPorts,
        schedule: Schedule,
        kind: type[Event],
        payload: Payload,
        event_id: str,
    ) -> None:
        event = build_event(
            kind,
            payload,
            event_id=event_id,
            aggregate_id=schedule.schedule_id,
            actor=_actor(schedule),
            occurred_at=self.clock(),
        )
        await append_event(ctx, WORKFLOW_EVENTS, event)


async def _finished(ctx: SubmissionPorts, run_id: str) -> bool:
    status = await ctx.pool.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
    return status in FINISHED
