"""``transform``: ``config.output`` rendered over the context is the node's output."""

from __future__ import annotations

from typing import Any

from aob import Job, node
from templating import renders
from workers.errors import ConfigError


@node("transform", render_config=False)
async def transform(job: Job[Any]) -> Any:
    """Its config's `output`, rendered over the run context, is its output."""
    if "output" not in job.config:
        raise ConfigError("transform config needs an 'output' template")
    return await renders.render_value(job.config["output"], job.template_context)
