"""Where a worker gets the secrets a node's config names: the tenant's store, opened here.

Only the worker opens secrets, at the moment of use: the coordinator and the command API
never render a config, so a value exists in no task, event or read model. Values are kept
in memory for ``ttl_s`` (a few seconds) so that a burst of runs of one workflow asks
PostgreSQL once; a secret changed or deleted is seen by the next attempt after that.

The pool to PostgreSQL is opened on first use: a worker whose nodes read no secret never
connects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from secret_store import SecretCipher, SecretNotFound, SecretStore
from secret_store.errors import SecretUnreadable
from workers.errors import InfrastructureFault, NodeError

DEFAULT_TTL_S = 5.0


class SecretSource(Protocol):
    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]: ...


class MissingSecret(NodeError):
    """The node names a secret its tenant does not have: the same on every attempt."""

    def __init__(self, error: SecretNotFound) -> None:
        self.names = error.names
        super().__init__(
            f"the config reads {', '.join('secrets.' + n for n in error.names)}, "
            f"but tenant {error.tenant!r} has no such secret (set it with `aob secrets set`)",
            retryable=False,
        )


class UnreadableSecret(NodeError):
    def __init__(self, error: SecretUnreadable) -> None:
        super().__init__(str(error), retryable=False)


class CachedSecrets:
    """A ``SecretSource`` that remembers what ``source`` answered for ``ttl_s`` seconds."""

    def __init__(
        self,
        source: SecretSource,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]:
        now = self._clock()
        found: dict[str, str] = {}
        wanted: list[str] = []
        for name in names:
            cached = self._cache.get((tenant, name))
            if cached is not None and cached[0] > now:
                found[name] = cached[1]
            else:
                wanted.append(name)
        if wanted:
            fresh = await self._source.values(tenant, wanted)
            if len(self._cache) > 10_000:
                self._cache.clear()
            for name, value in fresh.items():
                self._cache[(tenant, name)] = (now + self._ttl, value)
            found.update(fresh)
        return found


class PostgresSecrets:
    """The store in PostgreSQL, reached through a pool made on first use."""

    def __init__(self, dsn: str, cipher: SecretCipher) -> None:
        self._dsn = dsn
        self._cipher = cipher
        self._store: SecretStore | None = None
        self._pool: object | None = None
        self._lock = asyncio.Lock()

    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]:
        import asyncpg

        try:
            store = await self._connected()
            return await store.values(tenant, names)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            # Retried by the executor: the task waits for PostgreSQL, it does not fail.
            raise InfrastructureFault(f"the secrets store is unreachable: {e}") from e

    async def _connected(self) -> SecretStore:
        async with self._lock:
            if self._store is None:
                import asyncpg

                pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=4)
                store = SecretStore(pool, self._cipher)
                await store.ensure_schema()
                self._pool, self._store = pool, store
            return self._store

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()  # type: ignore[attr-defined]


async def resolve(source: SecretSource, tenant: str, names: Iterable[str]) -> dict[str, str]:
    """The values of ``names``, or the NodeError that fails the node naming what is wrong."""
    try:
        return await source.values(tenant, names)
    except SecretNotFound as e:
        raise MissingSecret(e) from None
    except SecretUnreadable as e:
        raise UnreadableSecret(e) from None
