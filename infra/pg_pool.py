"""PostgreSQL pools for the APIs: a connection goes back to its pool without a round trip.

On every release asyncpg resets the connection with ``SELECT pg_advisory_unlock_all();
CLOSE ALL; UNLISTEN *; RESET ALL;``, one more round trip to the server for each request's
connection: 11.5% of the command API's time in a burst of submissions (py-spy), for state
that AOB's pooled connections never keep. Their advisory locks are transaction-level
(``pg_advisory_xact_lock``, gone with the transaction), they issue no ``SET``, open no cursor
outside a transaction, and LISTEN on connections of their own (``infra.pg_listen``). A
transaction left open is still rolled back on release: asyncpg does that whatever the query.

A part that takes a session-level lock or sets a session variable on a pooled connection
must not use this pool (the schedule clock holds its lock on a connection it keeps).
"""

from __future__ import annotations

from typing import Any

import asyncpg


class StatelessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection with nothing to reset but an open transaction (asyncpg's own rule)."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(dsn: str, *, min_size: int, max_size: int, **kwargs: Any) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        connection_class=StatelessConnection,
        **kwargs,
    )
    return pool
