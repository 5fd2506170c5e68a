"""``transform``: ``config.output`` rendered over the context is the node's output."""

from __future__ import annotations

import asyncio
from typing import Any

from templating import render_value
from workers.errors import ConfigError
from workers.handlers.base import Job


async def transform(job: Job) -> Any:
    if "output" not in job.config:
        raise ConfigError("transform config needs an 'output' template")
    # In a thread: a heavy (if bounded) template must not stall the other tasks' event loop.
    return await asyncio.to_thread(render_value, job.config["output"], job.context)
