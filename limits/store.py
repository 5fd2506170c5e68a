"""The ``tenant_limits`` table: one JSON document per tenant that has set its own.

Every process reads the same rows; each remembers what it read for ``REMEMBER_S`` so that a
busy path does not ask PostgreSQL each time, and a change reaches every process within that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from limits.tenant_limits import DEFAULT_LIMITS, TenantLimits

REMEMBER_S = 1.0

DDL = """
SELECT pg_advisory_xact_lock(hashtext('aob.tenant_limits.schema'));
CREATE TABLE IF NOT EXISTS tenant_limits (
    tenant      text PRIMARY KEY,
    limits      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""


class Executor(Protocol):
    """What we need of an asyncpg pool or connection."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...


class LimitsStore:
    def __init__(self, db: Executor, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._clock = clock
        self._seen: dict[str, tuple[float, TenantLimits]] = {}

    async def ensure_schema(self) -> None:
        await self._db.execute(DDL)

    async def get(self, tenant: str) -> TenantLimits:
        now = self._clock()
        seen = self._seen.get(tenant)
        if seen is not None and now - seen[0] < REMEMBER_S:
            return seen[1]
        row = await self._db.fetchrow("SELECT limits FROM tenant_limits WHERE tenant = $1", tenant)
        limits = DEFAULT_LIMITS if row is None else TenantLimits.model_validate_json(row[0])
        self._seen[tenant] = (now, limits)
        return limits

    async def put(self, tenant: str, limits: TenantLimits) -> None:
        await self._db.execute(
            """INSERT INTO tenant_limits (tenant, limits) VALUES ($1, $2::jsonb)
               ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits, updated_at = now()""",
            tenant,
            json.dumps(limits.model_dump(mode="json")),
        )
        self._seen.pop(tenant, None)
