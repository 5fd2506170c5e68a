"""Liveness of services that serve no HTTP (coordinator, workers, projections).

Each such service touches ``<home>/run/<name>.heartbeat`` every couple of seconds from its
event loop; a file older than ``max_age`` means the process is gone or its loop is stuck,
which a bare "pid is alive" check would miss.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from infra.instances import instance_name
from infra.settings import Settings

INTERVAL_S = 2.0


def heartbeat_path(settings: Settings, name: str) -> Path:
    """The file of ``name``'s instance ``settings.instance`` (``infra.instances``)."""
    return settings.home / "run" / f"{instance_name(name, settings.instance)}.heartbeat"


async def beat(settings: Settings, name: str, interval: float = INTERVAL_S) -> None:
    """Touch the heartbeat file forever (run it as a task; cancel it on shutdown)."""
    path = heartbeat_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path.touch()
        await asyncio.sleep(interval)


def is_fresh(settings: Settings, name: str, max_age: float = 5 * INTERVAL_S) -> bool:
    try:
        return time.time() - heartbeat_path(settings, name).stat().st_mtime < max_age
    except FileNotFoundError:
        return False
