"""``noop``: does nothing and succeeds with ``{}`` (joins, fan-in points, benchmarks)."""

from __future__ import annotations

from typing import Any

from aob import Job, node


@node("noop", render_config=False)
async def noop(job: Job[Any]) -> dict[str, Any]:
    """Does nothing and succeeds with {} (joins, fan-in points, benchmarks)."""
    return {}
