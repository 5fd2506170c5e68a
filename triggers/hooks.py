"""Webhooks: which workflow a hook starts, its secret (sealed), and the signatures used.

A hook's secret is needed itself to check an HMAC, so it cannot be hashed as an API key is:
it is sealed as a tenant's secret is (``secret_store.crypto``, bound to the tenant and
``webhook:<hook id>``), and shown once, when the hook is made. PostgreSQL, a dump or a backup
holds no secret without the secrets key.

``webhook_signatures`` holds each signature taken, for the replay window: a second delivery
with one is refused. The table's primary key makes the check exact across command API
processes (``INSERT ... ON CONFLICT DO NOTHING``); rows older than the window are useless
(their timestamp is refused first) and are deleted as new ones come.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schemas import new_id
from secret_store import SecretCipher

DDL = """
CREATE TABLE IF NOT EXISTS webhooks (
    hook_id     text PRIMARY KEY,
    tenant      text NOT NULL,
    workflow    text NOT NULL,
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhooks_tenant ON webhooks (tenant, created_at);
CREATE TABLE IF NOT EXISTS webhook_signatures (
    hook_id    text NOT NULL,
    signature  text NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hook_id, signature)
);
CREATE INDEX IF NOT EXISTS webhook_signatures_used_at ON webhook_signatures (used_at);
"""

SECRET_BYTES = 32


@dataclass(frozen=True)
class Hook:
    """What may be shown of a hook: never its secret."""

    hook_id: str
    tenant: str
    workflow: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "hook_id": self.hook_id,
            "workflow": self.workflow,
            "created_at": self.created_at.isoformat(),
        }


def _hook(row: Any) -> Hook:
    return Hook(row["hook_id"], row["tenant"], row["workflow"], row["created_at"])


def _sealed_name(hook_id: str) -> str:
    return f"webhook:{hook_id}"


class HookStore:
    def __init__(self, pool: asyncpg.Pool, cipher: SecretCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    async def ensure_schema(self) -> None:
        await self._pool.execute(DDL)

    async def create(self, tenant: str, workflow: str) -> tuple[Hook, str]:
        """A new hook of ``tenant`` starting runs of ``workflow``, and its secret."""
        hook_id = new_id()
        secret = secrets.token_urlsafe(SECRET_BYTES)
        sealed = self._cipher.seal(tenant, _sealed_name(hook_id), secret)
        row = await self._pool.fetchrow(
            "INSERT INTO webhooks (hook_id, tenant, workflow, sealed) VALUES ($1, $2, $3, $4) "
            "RETURNING hook_id, tenant, workflow, created_at",
            hook_id,
            tenant,
            workflow,
            sealed,
        )
        return _hook(row), secret

    async def list(self, tenant: str) -> list[Hook]:
        rows = await self._pool.fetch(
            "SELECT hook_id, tenant, workflow, created_at FROM webhooks WHERE tenant = $1 "
            "ORDER BY created_at, hook_id",
            tenant,
        )
        return [_hook(r) for r in rows]

    async def delete(self, tenant: str, hook_id: str) -> bool:
        """False if ``tenant`` has no hook ``hook_id``."""
        status = await self._pool.execute(
            "DELETE FROM webhooks WHERE tenant = $1 AND hook_id = $2", tenant, hook_id
        )
        return bool(status.split()[-1] != "0")

    async def find(self, hook_id: str) -> tuple[Hook, str] | None:
        """The hook and its opened secret, or None if there is no such hook."""
        row = await self._pool.fetchrow(
            "SELECT hook_id, tenant, workflow, created_at, sealed FROM webhooks WHERE hook_id = $1",
            hook_id,
        )
        if row is None:
            return None
        hook = _hook(row)
        return hook, self._cipher.open(hook.tenant, _sealed_name(hook_id), bytes(row["sealed"]))

    async def use_signature(self, hook_id: str, signature: str, window_s: int) -> bool:
        """Take ``signature`` for ``hook_id``: False if it was taken already (a replay).
        Signatures older than twice the window go as new ones come."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM webhook_signatures WHERE used_at < now() - make_interval(secs => $1)",
                float(2 * window_s),
            )
            taken = await conn.fetchval(
                "INSERT INTO webhook_signatures (hook_id, signature) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING RETURNING true",
                hook_id,
                signature,
            )
        return bool(taken)

    async def release_signature(self, hook_id: str, signature: str) -> None:
        """Give a signature back when its delivery started no run (the sender may retry)."""
        await self._pool.execute(
            "DELETE FROM webhook_signatures WHERE hook_id = $1 AND signature = $2",
            hook_id,
            signature,
        )
