"""Why a task waits, in the words ``run.node_queued`` carries to people: each names the limit
and its numbers, so that a SCHEDULED node explains itself."""

from __future__ import annotations

MAX_KEY_SHOWN = 100  # a key is the author's text over the run input: any length


def shown_key(key: str) -> str:
    return repr(key if len(key) <= MAX_KEY_SHOWN else key[: MAX_KEY_SHOWN - 1] + "…")


def tenant_slots(tenant: str, node_type: str, running: int, cap: int | None) -> str:
    return f"tenant {tenant} has {running} of {cap} {node_type} slots in use on this worker"


def key_full(key: str, limit: int) -> str:
    return f"concurrency key {shown_key(key)}: {limit} of {limit} running"


def key_busy(key: str) -> str:
    return f"concurrency key {shown_key(key)}: every slot is in use"


def rate_limit(name: str, wait_s: float) -> str:
    return f"rate limit {name}: next call in {max(wait_s, 0.0):.1f} s"


def worker_slots(running: int, slots: int) -> str:
    return f"the worker has {running} of {slots} slots in use"


def store_unreachable(what: str) -> str:
    return f"{what}: the limits store (PostgreSQL) is unreachable; trying again"
