"""The ``tenant_limits`` table: one JSON document per tenant that has set its own.

Every process reads the same rows; each remembers what it read for ``REMEMBER_S`` so that a
busy path does not ask PostgreSQL each time. A change is sent as ``NOTIFY aob_tenant_limits,
'<tenant>'`` by the statement that writes it; a process that listens (``limits.changes``)
forgets that tenant's document as it hears it, and one that does not, or whose listener is
down, reads the change within ``REMEMBER_S``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from limits.tenant_limits import DEFAULT_LIMITS, TenantLimits

log = logging.getLogger("aob.limits")

REMEMBER_S = 1.0
CHANGES_CHANNEL = "aob_tenant_limits"

DDL = """
SELECT pg_advisory_xact_lock(hashtext('aob.tenant_limits.schema'));
CREATE TABLE IF NOT EXISTS tenant_limits (
    tenant      text PRIMARY KEY,
    limits      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""

# One statement: the row and the notification commit together (a listener never hears of a
# change it cannot read yet).
PUT = f"""
WITH written AS (
    INSERT INTO tenant_limits (tenant, limits) VALUES ($1, $2::jsonb)
    ON CONFLICT (tenant) DO UPDATE SET limits = excluded.limits, updated_at = now()
    RETURNING tenant
)
SELECT pg_notify('{CHANGES_CHANNEL}', tenant) FROM written
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
        limits = DEFAULT_LIMITS if row is None else _stored(tenant, row[0])
        self._seen[tenant] = (now, limits)
        return limits

    async def put(self, tenant: str, limits: TenantLimits) -> None:
        """Store ``tenant``'s whole document and tell every listening process."""
        await self._db.execute(PUT, tenant, json.dumps(limits.model_dump(mode="json")))
        self.forget(tenant)

    def forget(self, tenant: str | None = None) -> None:
        """Read ``tenant``'s document (every tenant's if None) again at its next use."""
        if tenant is None:
            self._seen.clear()
        else:
            self._seen.pop(tenant, None)


def _stored(tenant: str, document: str | bytes | dict[str, Any]) -> TenantLimits:
    """A stored document (its text, or a dict where the pool decodes jsonb, as the query
    API's does); the defaults if it no longer validates (written by a release whose document
    had other fields), rather than refusing every command of the tenant: logged, so that an
    operator sets it again."""
    try:
        if isinstance(document, dict):
            return TenantLimits.model_validate(document)
        return TenantLimits.model_validate_json(document)
    except ValidationError as e:
        log.error("tenant %s: its stored limits are not valid, the defaults apply: %s", tenant, e)
        return DEFAULT_LIMITS
