"""The wait_event nodes waiting now, by (tenant, name, key): how ``POST /v1/events`` finds
the runs an outside event is for.

The worker of a wait_event node appends ``run.event_awaited`` to the run, and only once it
is acknowledged writes the row (``record``): a posting that finds the row appends its
``run.event_received`` after the wait in the run's partition, so the coordinator always
meets the wait first. A posting takes the rows it matches (``take``: deleted as they are
read, so two postings at once never both reach one wait) and appends one event to each
run; rows whose wait is over by its time limit are not taken. An event posted when no node
waits for its name and key reaches no run: it is not kept for a node that waits later.

The coordinator decides with the run's facts, so a row that outlived its wait (the run
cancelled, the node timed out) does no harm: the event it brings changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

DDL = """
CREATE TABLE IF NOT EXISTS event_waits (
    tenant      text NOT NULL,
    name        text NOT NULL,
    key         text NOT NULL,
    run_id      text NOT NULL,
    node_id     text NOT NULL,
    attempt     integer NOT NULL,
    due_at      timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name, key, run_id, node_id, attempt)
);
"""


@dataclass(frozen=True)
class Waiter:
    run_id: str
    node_id: str
    attempt: int
    due_at: datetime | None


async def ensure_schema(db: Any) -> None:
    await db.execute(DDL)


async def record(
    db: Any,
    tenant: str,
    name: str,
    key: str,
    waiter: Waiter,
) -> None:
    await db.execute(
        "INSERT INTO event_waits (tenant, name, key, run_id, node_id, attempt, due_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        tenant,
        name,
        key,
        waiter.run_id,
        waiter.node_id,
        waiter.attempt,
        waiter.due_at,
    )


async def take(db: Any, tenant: str, name: str, key: str) -> list[Waiter]:
    """The waits of ``tenant`` for (``name``, ``key``) not yet over, removed as they are
    taken; expired rows of any key go too."""
    rows = await db.fetch(
        "DELETE FROM event_waits WHERE tenant = $1 AND name = $2 AND key = $3 "
        "RETURNING run_id, node_id, attempt, due_at",
        tenant,
        name,
        key,
    )
    await db.execute("DELETE FROM event_waits WHERE due_at < now() - interval '1 hour'")
    now = await db.fetchval("SELECT now()")
    return [
        Waiter(r["run_id"], r["node_id"], r["attempt"], r["due_at"])
        for r in rows
        if r["due_at"] is None or r["due_at"] > now
    ]


async def give_back(db: Any, tenant: str, name: str, key: str, waiters: list[Waiter]) -> None:
    """Put back waits taken by a posting that could not reach their runs."""
    for waiter in waiters:
        await record(db, tenant, name, key, waiter)
