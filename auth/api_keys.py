"""API keys for tenants: made, listed, revoked, and checked on every call.

A key reads ``aob_<key id>_<secret>``. Only the sha256 of the whole key is stored: the
secret has 256 bits of entropy, so a plain hash is enough (a slow password hash protects
low-entropy secrets, which these are not). Each key carries its scopes (``auth.scopes``).

Lookups are remembered by each process (``auth.key_cache``) so that a busy API does not ask
PostgreSQL on every request. A revocation is one statement that marks the key and sends
``NOTIFY aob_api_keys, '<key id>'`` in the same transaction: every process that listens
(``auth.revocations``) forgets the key as the revocation commits, and one that cannot listen
trusts what it remembers for a second only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from auth.key_cache import KeyCache
from auth.scopes import DEFAULT_SCOPES, SCOPES, allows, ordered, parse_scopes

REVOCATION_CHANNEL = "aob_api_keys"  # payload: the id of the key just revoked

_DEFAULT_SCOPES_SQL = "'{" + ",".join(ordered(DEFAULT_SCOPES)) + "}'"

# Idempotent, and safe when several processes start at once: the advisory lock (held to the
# end of this implicit transaction) serialises them, as IF NOT EXISTS alone does not.
# Keys made before scopes existed get every scope but admin, as they could do all that.
DDL = f"""
SELECT pg_advisory_xact_lock(hashtext('aob.api_keys.schema'));
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      text PRIMARY KEY,
    tenant      text NOT NULL,
    key_hash    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text[] NOT NULL
    DEFAULT {_DEFAULT_SCOPES_SQL};
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS name text;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant, created_at);
"""

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_ID_PATTERN = re.compile(r"^[a-z0-9]{12}$")
_KEY_PATTERN = re.compile(r"^aob_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
MAX_NAME_CHARS = 100

# A key's last use is written at most this often: a write per request would cost more than
# the check it records.
LAST_USED_EVERY = "1 minute"

_COLUMNS = "key_id, tenant, name, scopes, created_at, last_used_at, revoked_at"


class Executor(Protocol):
    """What we need of an asyncpg pool or connection."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...
    async def fetch(self, query: str, *args: object) -> list[Any]: ...


@dataclass(frozen=True)
class Principal:
    """Who calls: a key of a tenant, and what it may do."""

    tenant: str
    key_id: str
    scopes: frozenset[str] = field(default=DEFAULT_SCOPES)

    def allows(self, scope: str) -> bool:
        """Whether this key holds ``scope`` (``admin`` holds every scope)."""
        return allows(self.scopes, scope)


@dataclass(frozen=True)
class KeyInfo:
    """A key as it is listed: never its hash, never its secret."""

    key_id: str
    tenant: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> KeyInfo:
        return cls(
            key_id=row["key_id"],
            tenant=row["tenant"],
            name=row["name"],
            scopes=tuple(ordered(row["scopes"])),
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
        )

    def as_json(self) -> dict[str, Any]:
        def when(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        return {
            "key_id": self.key_id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": when(self.created_at),
            "last_used_at": when(self.last_used_at),
            "revoked_at": when(self.revoked_at),
        }


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown this once, only its hash is stored."""

    key: str
    info: KeyInfo


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_schema(db: Executor) -> None:
    await db.execute(DDL)


def check_tenant(tenant: str) -> None:
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


def check_name(name: str | None) -> None:
    if name is not None and (len(name) > MAX_NAME_CHARS or not name.isprintable()):
        raise ValueError(
            f"a key's name is a label of at most {MAX_NAME_CHARS} printable characters"
        )


async def create_key(
    db: Executor, tenant: str, scopes: Iterable[str] | None = None, name: str | None = None
) -> NewKey:
    """Create a key for ``tenant`` with ``scopes`` (default: every scope but admin).

    Raises ValueError for a tenant or name we do not accept, ``auth.scopes.UnknownScope``
    (a ValueError) for a scope that does not exist.
    """
    check_tenant(tenant)
    check_name(name)
    held = ordered(parse_scopes(scopes))
    key_id = secrets.token_hex(6)
    key = f"aob_{key_id}_{secrets.token_urlsafe(32)}"
    row = await db.fetchrow(
        "INSERT INTO api_keys (key_id, tenant, key_hash, scopes, name) "
        f"VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
        key_id,
        tenant,
        _hash(key),
        held,
        name,
    )
    return NewKey(key=key, info=KeyInfo.of(row))


async def list_keys(db: Executor, tenant: str) -> list[KeyInfo]:
    """Every key of ``tenant``, revoked ones too, oldest first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at, key_id", tenant
    )
    return [KeyInfo.of(row) for row in rows]


# One statement, so one transaction: the NOTIFY is delivered when the revocation commits,
# never without it. A key revoked again keeps its first revocation time (and is notified
# again, which costs nothing).
REVOKE = f"""
WITH revoked AS (
    UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
    WHERE key_id = $1 AND ($2::text IS NULL OR tenant = $2)
    RETURNING {_COLUMNS}
)
SELECT revoked.*, pg_notify('{REVOCATION_CHANNEL}', revoked.key_id) AS notified FROM revoked
"""


async def revoke_key(db: Executor, key_id: str, tenant: str | None = None) -> KeyInfo | None:
    """Revoke ``key_id`` (only if it is ``tenant``'s, when a tenant is given) and tell every
    process at once. None if there is no such key (of that tenant)."""
    if not KEY_ID_PATTERN.match(key_id):
        return None
    row = await db.fetchrow(REVOKE, key_id, tenant)
    return KeyInfo.of(row) if row is not None else None


# The check of a key also records its use, at most once per LAST_USED_EVERY: a data-modifying
# CTE runs whether or not its rows are read, in the same round trip as the check.
LOOKUP = f"""
WITH found AS (
    SELECT key_id, tenant, key_hash, scopes FROM api_keys
    WHERE key_hash = $1 AND revoked_at IS NULL
), used AS (
    UPDATE api_keys SET last_used_at = now()
    WHERE key_hash = $1 AND revoked_at IS NULL
      AND (last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_EVERY}')
)
SELECT key_id, tenant, key_hash, scopes FROM found
"""

KEYS: KeyCache[Principal] = KeyCache()
"""This process's memory of checked keys; ``auth.revocations`` evicts from it."""


async def authenticate(
    db: Executor, authorization: str | None, cache: KeyCache[Principal] | None = None
) -> Principal | None:
    """The principal behind an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    matched = _KEY_PATTERN.match(key)
    if scheme.lower() != "bearer" or not matched:
        return None
    cache = KEYS if cache is None else cache
    digest = _hash(key)
    found, principal = cache.get(digest)
    if found:
        return principal
    row = await db.fetchrow(LOOKUP, digest)
    principal = None
    if row is not None and hmac.compare_digest(row["key_hash"], digest):
        principal = Principal(
            tenant=row["tenant"],
            key_id=row["key_id"],
            scopes=frozenset(s for s in row["scopes"] if s in SCOPES),
        )
    cache.put(digest, matched.group(1), principal)
    return principal


async def issue_key(
    dsn: str, tenant: str, scopes: Iterable[str] | None = None, name: str | None = None
) -> str:
    """Connect to ``dsn``, make sure the key table exists, and create a key for ``tenant``
    (default scopes: every one but admin); return the key.

    The way the CLI, the demo and the tests make keys: a tenant's first key cannot be asked
    for with a key (an admin key then makes more over REST).
    """
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await ensure_schema(conn)
        return (await create_key(conn, tenant, scopes, name)).key
    finally:
        await conn.close()
