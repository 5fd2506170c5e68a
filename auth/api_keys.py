"""API keys for tenants.

A key reads ``aob_<key id>_<secret>``. Only the sha256 of the whole key is stored: the
secret has 256 bits of entropy, so a plain hash is enough (a slow password hash protects
low-entropy secrets, which these are not). Lookups are cached briefly so that a busy API
does not ask Postgres on every request; a revoked key stops working within the TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

DDL = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text PRIMARY KEY,
    tenant      text NOT NULL,
    key_hash    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
"""

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY_PATTERN = re.compile(r"^aob_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_CACHE_TTL_S = 30.0


class Executor(Protocol):
    """What we need of an asyncpg pool or connection."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetchrow(self, query: str, *args: object) -> object: ...


SCOPES = frozenset({"read", "publish", "submit", "approve", "patch", "admin"})
# A key made without scopes, and every key made before scopes existed, may do all but admin.
DEFAULT_SCOPES = SCOPES - {"admin"}


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str
    scopes: frozenset[str] = DEFAULT_SCOPES

    def allows(self, scope: str) -> bool:
        """Whether this key may act with ``scope``; ``admin`` allows every scope."""
        return "admin" in self.scopes or scope in self.scopes


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_schema(db: Executor) -> None:
    await db.execute(DDL)


async def create_key(db: Executor, tenant: str) -> str:
    """Create a key for ``tenant`` and return it; it is not stored and cannot be shown again."""
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    key_id = secrets.token_hex(6)
    key = f"aob_{key_id}_{secrets.token_urlsafe(32)}"
    await db.execute(
        "INSERT INTO api_keys (key_id, tenant, key_hash) VALUES ($1, $2, $3)",
        key_id,
        tenant,
        _hash(key),
    )
    return key


_cache: dict[str, tuple[float, Principal | None]] = {}


async def authenticate(db: Executor, authorization: str | None) -> Principal | None:
    """The principal behind an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not _KEY_PATTERN.match(key):
        return None
    digest = _hash(key)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached and cached[0] > now:
        return cached[1]
    row = await db.fetchrow(
        "SELECT key_id, tenant, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        digest,
    )
    principal = None
    if row is not None and hmac.compare_digest(row["key_hash"], digest):  # type: ignore[index]
        principal = Principal(tenant=row["tenant"], key_id=row["key_id"])  # type: ignore[index]
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (now + _CACHE_TTL_S, principal)
    return principal


async def issue_key(dsn: str, tenant: str) -> str:
    """Connect to ``dsn``, make sure the key table exists, and create a key for ``tenant``.

    The one way the CLI, the demo and the tests make keys (no API issues keys: a tenant's
    first key cannot be asked for with a key).
    """
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await ensure_schema(conn)
        return await create_key(conn, tenant)
    finally:
        await conn.close()
