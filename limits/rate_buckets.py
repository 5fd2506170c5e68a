"""Named rate limits across every worker process: one row per (tenant, name) in PostgreSQL.

The bucket is kept as GCRA keeps it (the generic cell rate algorithm, which is a token bucket
written as one timestamp): ``tat`` is the moment the bucket would be full again. With
``emission`` = ``per_seconds / limit`` (the time one call's token takes to come back) and
``capacity`` tokens, a call at time ``t`` is granted when
``max(tat, t) + emission <= t + capacity * emission``, and then ``tat`` moves to
``max(tat, t) + emission``. When it is refused, the next call can go at
``tat + emission - capacity * emission``: that is how long to wait.

One statement per take: an upsert whose ``DO UPDATE`` computes the grant from the row it has
locked (PostgreSQL reads the newest version of a conflicting row, so concurrent takes are
serialised on it and none is lost or double counted), and returns the grant and the wait.
``granted`` is a column only so that the statement can return what it decided: ``RETURNING``
sees only the row as written. Time is PostgreSQL's (``statement_timestamp()``), one clock
for every process.
"""

from __future__ import annotations

from typing import Any, Protocol

from limits.execution import RateLimit

DDL = """
SELECT pg_advisory_xact_lock(hashtext('aob.rate_buckets.schema'));
CREATE TABLE IF NOT EXISTS rate_buckets (
    tenant   text NOT NULL,
    name     text NOT NULL,
    tat      timestamptz NOT NULL,
    granted  boolean NOT NULL,
    PRIMARY KEY (tenant, name)
);
"""

# $1 tenant, $2 name, $3 emission (seconds a token takes to come back), $4 capacity times
# emission (seconds). Returns (granted, seconds until the next call can be granted).
TAKE = """
INSERT INTO rate_buckets AS b (tenant, name, tat, granted)
VALUES ($1, $2, statement_timestamp() + make_interval(secs => $3::float8), true)
ON CONFLICT (tenant, name) DO UPDATE SET
    granted = greatest(b.tat, statement_timestamp()) + make_interval(secs => $3::float8)
              <= statement_timestamp() + make_interval(secs => $4::float8),
    tat = CASE
        WHEN greatest(b.tat, statement_timestamp()) + make_interval(secs => $3::float8)
             <= statement_timestamp() + make_interval(secs => $4::float8)
        THEN greatest(b.tat, statement_timestamp()) + make_interval(secs => $3::float8)
        ELSE b.tat
    END
RETURNING b.granted,
    greatest(
        0.0::float8,
        extract(epoch FROM b.tat - statement_timestamp())::float8 + $3::float8 - $4::float8
    ) AS wait_s
"""

MIN_WAIT_S = 0.001  # a refusal always waits a little, whatever the rounding


def take_at(
    tat: float | None, now: float, emission: float, capacity: int
) -> tuple[bool, float | None, float]:
    """``TAKE``'s rule in Python, times in seconds: (granted, ``tat`` after, seconds to wait
    when refused). A row that does not exist yet is ``tat=None``. The pure lane checks the
    rule; the connected lane holds the statement to it."""
    if tat is None:
        return True, now + emission, 0.0
    after = max(tat, now) + emission
    if after <= now + capacity * emission:
        return True, after, 0.0
    return False, tat, max(tat + emission - capacity * emission - now, MIN_WAIT_S)


class Database(Protocol):
    async def execute(self, query: str, *args: object) -> str: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...


class RateBuckets:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure_schema(self) -> None:
        await self._db.execute(DDL)

    async def take(self, tenant: str, name: str, limit: RateLimit) -> float:
        """Take one call from the tenant's rate limit ``name``: 0.0 if granted, else the
        seconds to wait before one can be (nothing is taken then)."""
        emission = limit.emission_s
        row = await self._db.fetchrow(TAKE, tenant, name, emission, emission * limit.capacity)
        if row[0]:
            return 0.0
        return max(float(row[1]), MIN_WAIT_S)
