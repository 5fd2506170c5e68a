"""Concurrency keys across every worker process: slots leased in PostgreSQL.

A node that declares ``"concurrency": {"key": "{{ input.customer }}", "limit": 2}`` runs an
attempt only while it holds one of the key's slots ``0 .. limit-1``: a row of
``concurrency_leases`` keyed by (tenant, key, slot). Taking one is one statement: pick a
slot with no live row (at random, so that processes taking at once rarely pick the same),
insert it, and if a row is there already take it over only if its lease has expired
(``ON CONFLICT … DO UPDATE … WHERE expires_at <= now``: PostgreSQL locks the row and reads
its newest version, so of two processes that race for one slot exactly one gets it; the other
gets no row back and tries again later). Hence at most ``limit`` live leases per key, whatever
the number of processes.

A lease expires ``ttl_s`` after it was taken or last renewed; the worker renews all its leases
in one statement every ``ttl_s / 3``, and deletes a lease when its attempt ends. So the slot of
a worker that died frees itself within ``ttl_s``. (A worker cut off from PostgreSQL for longer
than ``ttl_s`` while its attempt still runs loses its lease: a second attempt may then start
for that key. The worker logs it; it does not stop an attempt midway through its side effect.)

Scope: the tenant. Two workflows, or two nodes of one, that name the same key share its slots,
since a key usually names something outside AOB that they all touch (a customer's account, an
API); an author who wants a bound per workflow writes it into the key
(``"{{ 'import:' ~ input.customer }}"``). Never wider than the tenant: one tenant's
``customer-7`` is not another's. Nodes that share a key should declare one limit; where they
differ, a node starts only while one of its own first ``limit`` slots is free, so the key
never has more attempts running than the largest limit declared.

Time is PostgreSQL's (``statement_timestamp()``): every process compares expiries on one
clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_TTL_S = 30.0

DDL = """
SELECT pg_advisory_xact_lock(hashtext('aob.concurrency_leases.schema'));
CREATE TABLE IF NOT EXISTS concurrency_leases (
    tenant      text NOT NULL,
    key         text NOT NULL,
    slot        integer NOT NULL,
    holder      text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, key, slot)
);
CREATE INDEX IF NOT EXISTS concurrency_leases_holder ON concurrency_leases (holder);
"""

# $1 tenant, $2 key, $3 limit, $4 holder, $5 ttl in seconds. Returns the slot, or no row.
ACQUIRE = """
WITH free AS (
    SELECT s.slot
    FROM generate_series(0, $3::integer - 1) AS s (slot)
    WHERE NOT EXISTS (
        SELECT 1 FROM concurrency_leases AS l
        WHERE l.tenant = $1 AND l.key = $2 AND l.slot = s.slot
          AND l.expires_at > statement_timestamp()
    )
    ORDER BY random()
    LIMIT 1
)
INSERT INTO concurrency_leases AS held (tenant, key, slot, holder, expires_at)
SELECT $1, $2, free.slot, $4::text, statement_timestamp() + make_interval(secs => $5::float8)
FROM free
ON CONFLICT (tenant, key, slot) DO UPDATE
    SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE held.expires_at <= statement_timestamp()
RETURNING held.slot
"""

# $1 holders, $2 ttl in seconds. Returns the holders whose leases are still theirs.
RENEW = """
UPDATE concurrency_leases
SET expires_at = statement_timestamp() + make_interval(secs => $2::float8)
WHERE holder = ANY($1::text[])
RETURNING holder
"""

# $1 tenant, $2 key, $3 slot, $4 holder: only the holder's own row (it may have been taken
# over after it expired).
RELEASE = """
DELETE FROM concurrency_leases
WHERE tenant = $1 AND key = $2 AND slot = $3 AND holder = $4
"""

# $1 seconds: rows of workers that died, expired that long ago (a live key's rows are
# deleted on release; these only take room).
SWEEP = """
DELETE FROM concurrency_leases
WHERE expires_at < statement_timestamp() - make_interval(secs => $1::float8)
"""

# How many live leases a key has: for operators and the connected tests.
RUNNING = """
SELECT count(*) FROM concurrency_leases
WHERE tenant = $1 AND key = $2 AND expires_at > statement_timestamp()
"""


class Database(Protocol):
    """What we need of an asyncpg pool."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetch(self, query: str, *args: object) -> list[Any]: ...
    async def fetchval(self, query: str, *args: object) -> Any: ...


@dataclass(frozen=True)
class Lease:
    tenant: str
    key: str
    slot: int
    holder: str


class ConcurrencyLeases:
    def __init__(self, db: Database, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._db = db
        self.ttl_s = ttl_s

    async def ensure_schema(self) -> None:
        await self._db.execute(DDL)

    async def acquire(self, tenant: str, key: str, limit: int, holder: str) -> Lease | None:
        """One of the key's ``limit`` slots for ``holder`` (a token unique to the attempt),
        or None when all are held."""
        slot = await self._db.fetchval(ACQUIRE, tenant, key, limit, holder, self.ttl_s)
        return None if slot is None else Lease(tenant, key, int(slot), holder)

    async def renew(self, holders: Sequence[str]) -> set[str]:
        """Extend the leases of ``holders``; returns those that were still theirs."""
        if not holders:
            return set()
        rows = await self._db.fetch(RENEW, list(holders), self.ttl_s)
        return {r[0] for r in rows}

    async def release(self, lease: Lease) -> None:
        await self._db.execute(RELEASE, lease.tenant, lease.key, lease.slot, lease.holder)

    async def sweep(self, expired_for_s: float = 3600.0) -> None:
        await self._db.execute(SWEEP, expired_for_s)

    async def running(self, tenant: str, key: str) -> int:
        return int(await self._db.fetchval(RUNNING, tenant, key))
