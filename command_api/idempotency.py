"""``Idempotency-Key``: a retried command appends nothing new and gets the first answer.

The first request with a key reserves it (a row without a response) before doing anything,
so two identical requests racing each other cannot both append: the loser is told to retry
(409) and, once the winner has stored its answer, gets that answer. A failed command frees
its reservation, so a retry may run it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from command_api.errors import BadRequest, Conflict, InvalidInput

MAX_KEY_LENGTH = 255

Answer = tuple[int, dict[str, Any]]


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\x1f".join([method.encode(), path.encode(), body])).hexdigest()


async def once(
    pool: asyncpg.Pool,
    tenant: str,
    key: str | None,
    fingerprint: str,
    command: Callable[[], Awaitable[Answer]],
) -> Answer:
    """Run ``command`` at most once per (tenant, key); replay its stored answer after."""
    if key is None:
        return await command()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters")
    reserved = await pool.fetchval(
        """INSERT INTO idempotency_keys (tenant, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT (tenant, key) DO NOTHING RETURNING true""",
        tenant, key, fingerprint,
    )
    if not reserved:
        row = await pool.fetchrow(
            "SELECT request_hash, status_code, response FROM idempotency_keys "
            "WHERE tenant = $1 AND key = $2",
            tenant, key,
        )
        if row is None:  # freed by a failed first attempt in the meantime
            raise Conflict("a request with this Idempotency-Key was just abandoned; retry")
        if row["request_hash"] != fingerprint:
            raise InvalidInput(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new command"
            )
        if row["status_code"] is None:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry")
        return row["status_code"], json.loads(row["response"])
    try:
        status, body = await command()
    except BaseException:  # also a cancelled request: the key must not stay reserved
        await pool.execute(
            "DELETE FROM idempotency_keys WHERE tenant = $1 AND key = $2", tenant, key
        )
        raise
    await pool.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE tenant = $1 AND key = $2",
        tenant, key, status, json.dumps(body),
    )
    return status, body
