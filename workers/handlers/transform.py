"""``transform``: ``config.output`` rendered over the context is the node's output."""

from __future__ import annotations

from typing import Any

from templating import renders
from workers.errors import ConfigError
from workers.handlers.base import Job


async def transform(job: Job) -> Any:
    if "output" not in job.config:
        raise ConfigError("transform config needs an 'output' template")
    return await renders.render_value(job.config["output"], job.template_context)
