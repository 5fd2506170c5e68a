"""The schedules as the command API and the coordinator's schedule clock work on them.

The log holds a schedule's history (``schedule.created``, ``.paused``, ``.resumed``,
``.deleted``, each ``.fired`` and ``.skipped``, on the workflow events topic); these tables
are the working view of it, as ``workflow_registry`` is of publications:

- ``schedules``: each live schedule, its cadence and state, and the last moment the clock
  handled (``last_due``), with the run it started (``last_run_id``). The command API writes
  a row as it appends the event that makes or changes it; the clock moves ``last_due`` on
  after it has appended a firing and submitted its run, so a clock that stops in between
  fires that moment again after a restart, under the same ids (nothing doubles).
- ``schedule_firings``: what the clock did at each moment (fired, skipped, why), one row per
  (schedule, moment): what ``aob schedules list`` and ``GET /v1/schedules/{id}`` show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from triggers.schedules import Cadence

DDL = """
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id  text PRIMARY KEY,
    tenant       text NOT NULL,
    workflow     text NOT NULL,
    cron         text,
    every_s      integer,
    timezone     text NOT NULL,
    overlap      text NOT NULL,
    input        text NOT NULL,
    status       text NOT NULL DEFAULT 'active',
    created_at   timestamptz NOT NULL,
    resumed_at   timestamptz,
    last_due     timestamptz,
    last_run_id  text
);
CREATE INDEX IF NOT EXISTS schedules_tenant ON schedules (tenant, created_at);
CREATE TABLE IF NOT EXISTS schedule_firings (
    schedule_id  text NOT NULL,
    due_at       timestamptz NOT NULL,
    outcome      text NOT NULL,
    run_id       text,
    reason       text,
    count        integer NOT NULL DEFAULT 1,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, due_at)
);
"""

COLUMNS = (
    "schedule_id, tenant, workflow, cron, every_s, timezone, overlap, input, status, "
    "created_at, resumed_at, last_due, last_run_id"
)


@dataclass(frozen=True)
class Schedule:
    schedule_id: str
    tenant: str
    workflow: str
    cron: str | None
    every_s: int | None
    timezone: str
    overlap: str
    input: Any
    status: str
    created_at: datetime
    resumed_at: datetime | None = None
    last_due: datetime | None = None
    last_run_id: str | None = None

    @property
    def cadence(self) -> Cadence:
        return Cadence(cron=self.cron, every_s=self.every_s, timezone=self.timezone)

    @property
    def since(self) -> datetime:
        """The moment after which the clock looks for moments due: the last one handled, or
        the creation (or the resumption: moments while paused are not caught up)."""
        marks = [m for m in (self.last_due, self.created_at, self.resumed_at) if m is not None]
        return max(marks)

    def as_json(self) -> dict[str, Any]:
        return {
            "schedule_id": self.schedule_id,
            "workflow": self.workflow,
            "cron": self.cron,
            "every_s": self.every_s,
            "timezone": self.timezone,
            "overlap": self.overlap,
            "input": self.input,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "last_due": self.last_due.isoformat() if self.last_due else None,
            "last_run_id": self.last_run_id,
        }


def _schedule(row: Any) -> Schedule:
    values = dict(row)
    values["input"] = json.loads(values["input"])
    return Schedule(**values)


class ScheduleStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ensure_schema(self) -> None:
        await self._pool.execute(DDL)

    async def add(self, schedule: Schedule) -> None:
        await self._pool.execute(
            f"INSERT INTO schedules ({COLUMNS}) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (schedule_id) DO NOTHING",
            schedule.schedule_id,
            schedule.tenant,
            schedule.workflow,
            schedule.cron,
            schedule.every_s,
            schedule.timezone,
            schedule.overlap,
            json.dumps(schedule.input),
            schedule.status,
            schedule.created_at,
            schedule.resumed_at,
            schedule.last_due,
            schedule.last_run_id,
        )

    async def get(self, tenant: str, schedule_id: str) -> Schedule | None:
        row = await self._pool.fetchrow(
            f"SELECT {COLUMNS} FROM schedules WHERE tenant = $1 AND schedule_id = $2",
            tenant,
            schedule_id,
        )
        return None if row is None else _schedule(row)

    async def of_tenant(self, tenant: str) -> list[Schedule]:
        rows = await self._pool.fetch(
            f"SELECT {COLUMNS} FROM schedules WHERE tenant = $1 ORDER BY created_at, schedule_id",
            tenant,
        )
        return [_schedule(r) for r in rows]

    async def active(self) -> list[Schedule]:
        rows = await self._pool.fetch(f"SELECT {COLUMNS} FROM schedules WHERE status = 'active'")
        return [_schedule(r) for r in rows]

    async def set_status(self, tenant: str, schedule_id: str, status: str) -> bool:
        """Pause or resume; False if there is no such schedule of ``tenant``."""
        result = await self._pool.execute(
            "UPDATE schedules SET status = $3, "
            "resumed_at = CASE WHEN $3 = 'active' AND status <> 'active' THEN now() "
            "ELSE resumed_at END WHERE tenant = $1 AND schedule_id = $2",
            tenant,
            schedule_id,
            status,
        )
        return bool(str(result).split()[-1] != "0")

    async def delete(self, tenant: str, schedule_id: str) -> bool:
        result = await self._pool.execute(
            "DELETE FROM schedules WHERE tenant = $1 AND schedule_id = $2", tenant, schedule_id
        )
        return bool(str(result).split()[-1] != "0")

    async def record(  # noqa: PLR0917 - one row's columns
        self,
        schedule_id: str,
        due_at: datetime,
        outcome: str,
        run_id: str | None,
        reason: str | None = None,
        count: int = 1,
    ) -> None:
        """What the clock did at ``due_at``; the schedule's ``last_due`` moves on to it
        (never back)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO schedule_firings (schedule_id, due_at, outcome, run_id, reason, "
                "count) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                schedule_id,
                due_at,
                outcome,
                run_id,
                reason,
                count,
            )
            await conn.execute(
                "UPDATE schedules SET last_due = $2, "
                "last_run_id = COALESCE($3, last_run_id) "
                "WHERE schedule_id = $1 AND (last_due IS NULL OR last_due < $2)",
                schedule_id,
                due_at,
                run_id,
            )

    async def firings(self, schedule_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT due_at, outcome, run_id, reason, count, recorded_at FROM schedule_firings "
            "WHERE schedule_id = $1 ORDER BY due_at DESC LIMIT $2",
            schedule_id,
            limit,
        )
        return [
            {**dict(r), **{k: r[k].isoformat() for k in ("due_at", "recorded_at")}}
            for r in reversed(rows)
        ]
