"""``noop``: does nothing and succeeds with ``{}`` (joins, fan-in points, benchmarks)."""

from __future__ import annotations

from typing import Any

from workers.handlers.base import Job


async def noop(job: Job) -> dict[str, Any]:
    return {}
