"""The secrets of every tenant, sealed, in one PostgreSQL table.

The command API (and ``aob secrets``) seal values here; workers open them. A row holds the
sealed bytes only (``secret_store.crypto``): neither PostgreSQL nor ``pg_dump`` ever sees a
value. Names and dates are not secret and are listed as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas.secret_refs import MAX_SECRET_VALUE_BYTES, is_secret_name
from secret_store.crypto import SecretCipher
from secret_store.errors import InvalidSecret, SecretNotFound

DDL = """
CREATE TABLE IF NOT EXISTS tenant_secrets (
    tenant      text NOT NULL,
    name        text NOT NULL,
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);
"""


class Database(Protocol):
    """What the store needs of an asyncpg pool or connection."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def fetch(self, query: str, *args: object) -> list[Any]: ...


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: never its value."""

    name: str
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not is_secret_name(name):
        raise InvalidSecret(
            f"secret name {name!r} must be 1-64 letters, digits or '_', not starting with a digit"
        )
    return name


def check_value(value: str) -> str:
    """A value as it may be stored; the refusal says why, never what the value is."""
    if not isinstance(value, str):
        raise InvalidSecret("a secret's value must be a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise InvalidSecret("a secret's value must not be empty")
    if size > MAX_SECRET_VALUE_BYTES:
        raise InvalidSecret(
            f"a secret's value is {size} bytes; the limit is {MAX_SECRET_VALUE_BYTES}"
        )
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidSecret("a secret's value must be text without NUL or lone surrogates")
    return value


class SecretStore:
    def __init__(self, db: Database, cipher: SecretCipher) -> None:
        self._db = db
        self._cipher = cipher

    async def ensure_schema(self) -> None:
        await self._db.execute(DDL)

    async def put(self, tenant: str, name: str, value: str) -> None:
        """Set (or replace) ``name`` for ``tenant``."""
        check_name(name)
        sealed = self._cipher.seal(tenant, name, check_value(value))
        await self._db.execute(
            "INSERT INTO tenant_secrets (tenant, name, sealed) VALUES ($1, $2, $3) "
            "ON CONFLICT (tenant, name) DO UPDATE SET sealed = EXCLUDED.sealed, "
            "updated_at = now()",
            tenant,
            name,
            sealed,
        )

    async def list(self, tenant: str) -> list[SecretInfo]:
        rows = await self._db.fetch(
            "SELECT name, created_at, updated_at FROM tenant_secrets WHERE tenant = $1 "
            "ORDER BY name",
            tenant,
        )
        return [SecretInfo(r["name"], r["created_at"], r["updated_at"]) for r in rows]

    async def delete(self, tenant: str, name: str) -> None:
        """SecretNotFound if ``tenant`` has no secret ``name``."""
        check_name(name)
        status = await self._db.execute(
            "DELETE FROM tenant_secrets WHERE tenant = $1 AND name = $2", tenant, name
        )
        if status.split()[-1] == "0":
            raise SecretNotFound(tenant, [name])

    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]:
        """The opened values of ``names`` for ``tenant``; SecretNotFound names every one
        missing."""
        wanted = sorted(set(names))
        rows = await self._db.fetch(
            "SELECT name, sealed FROM tenant_secrets WHERE tenant = $1 AND name = ANY($2::text[])",
            tenant,
            wanted,
        )
        found = {r["name"]: self._cipher.open(tenant, r["name"], bytes(r["sealed"])) for r in rows}
        missing = [n for n in wanted if n not in found]
        if missing:
            raise SecretNotFound(tenant, missing)
        return found
