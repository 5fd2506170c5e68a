"""``Idempotency-Key``: a retried command appends nothing new and gets the first answer.

The first request with a key reserves it (a row without an answer) before doing anything,
so two identical requests racing each other cannot both append: the second waits for the
first's stored answer and returns it (409 only if the first is still busy after
``wait_s``). A command that fails frees its reservation, so a retry may run it again.

A reservation left behind by a process that died mid-command is taken over after
``STALE_AFTER_S``. The command may then run twice; routes derive their event ids and run ids
from the key (``keyed_id``), so the second append carries the same ids as the first and every
consumer drops it as already seen.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from command_api.errors import BadRequest, Conflict, InvalidInput
from schemas import canonical_json, deterministic_id, sha256_hex

MAX_KEY_LENGTH = 255
STALE_AFTER_S = 60.0
_POLL_S = 0.05

Answer = tuple[int, dict[str, Any]]


def request_hash(method: str, path: str, body: Any) -> str:
    """What makes two requests "the same": method, path and the body's JSON value (None for
    no body, as the door parsed it: ``command_api.door.parsed_body``).

    The value is hashed in canonical form, so a client that re-serialises the same value
    (other key order, other spacing) on retry still matches.
    """
    normal = canonical_json(body) if body is not None else b""
    return sha256_hex(b"\x1f".join([method.encode(), path.encode(), normal]))


def keyed_id(kind: str, tenant: str, key: str | None) -> str | None:
    """A stable id for what a keyed command creates (None without a key)."""
    return deterministic_id("idempotency", kind, tenant, key) if key else None


def check_key(key: str) -> None:
    """400 unless the key is 1 to MAX_KEY_LENGTH printable characters (no NUL, no control
    character): it is stored as text and shown back in answers."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        unprintable = "" if key.isprintable() else ", not all of them printable"
        raise BadRequest(
            f"Idempotency-Key: the header must be 1-{MAX_KEY_LENGTH} printable characters; "
            f"this one has {len(key)}{unprintable}"
        )


async def _reserve(pool: asyncpg.Pool, tenant: str, key: str, fingerprint: str) -> bool:
    """True if this request now owns the key (new, or a stale reservation taken over)."""
    return bool(
        await pool.fetchval(
            """INSERT INTO idempotency_keys (tenant, key, request_hash) VALUES ($1, $2, $3)
               ON CONFLICT (tenant, key) DO UPDATE SET created_at = now()
                   WHERE idempotency_keys.status_code IS NULL
                     AND idempotency_keys.request_hash = EXCLUDED.request_hash
                     AND idempotency_keys.created_at < now() - make_interval(secs => $4)
               RETURNING true""",
            tenant,
            key,
            fingerprint,
            STALE_AFTER_S,
        )
    )


async def _stored_answer(
    pool: asyncpg.Pool, tenant: str, key: str, fingerprint: str, wait_s: float
) -> Answer | None:
    """The first request's answer, waiting up to ``wait_s`` for it; None if it was freed."""
    deadline = time.monotonic() + wait_s
    while True:
        row = await pool.fetchrow(
            "SELECT request_hash, status_code, response FROM idempotency_keys "
            "WHERE tenant = $1 AND key = $2",
            tenant,
            key,
        )
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            raise InvalidInput(
                "this Idempotency-Key was already used for a different request; "
                "use a new key for a new command"
            )
        if row["status_code"] is not None:
            return row["status_code"], json.loads(row["response"])
        if time.monotonic() >= deadline:
            raise Conflict("a request with this Idempotency-Key is still being processed; retry")
        await asyncio.sleep(_POLL_S)


async def once(
    pool: asyncpg.Pool,
    tenant: str,
    key: str | None,
    fingerprint: str,
    command: Callable[[], Awaitable[Answer]],
    *,
    wait_s: float = 5.0,
) -> Answer:
    """Run ``command`` at most once per (tenant, key); replay its stored answer after."""
    if key is None:
        return await command()
    check_key(key)
    for _ in range(3):
        if await _reserve(pool, tenant, key, fingerprint):
            break
        answer = await _stored_answer(pool, tenant, key, fingerprint, wait_s)
        if answer is not None:
            return answer
        # The first attempt failed and freed the key: try to reserve it ourselves.
    else:
        raise Conflict("this Idempotency-Key is contended; retry")
    try:
        status, body = await command()
    except BaseException:  # also a cancelled request: the key must not stay reserved
        await pool.execute(
            "DELETE FROM idempotency_keys WHERE tenant = $1 AND key = $2", tenant, key
        )
        raise
    await pool.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 "
        "WHERE tenant = $1 AND key = $2",
        tenant,
        key,
        status,
        json.dumps(body),
    )
    return status, body


async def forget_old(pool: asyncpg.Pool, ttl_hours: int) -> str:
    """Drop keys older than the TTL: a retry comes within minutes, not days."""
    return str(
        await pool.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
            ttl_hours,
        )
    )
