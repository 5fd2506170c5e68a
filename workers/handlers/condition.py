"""``condition``: ``config.expr`` evaluated over the context; output ``{"result": bool}``.

The coordinator follows the edges whose ``when`` matches ``"true"``/``"false"``.
"""

from __future__ import annotations

from typing import Any

from templating import renders
from workers.errors import ConfigError
from workers.handlers.base import Job


async def condition(job: Job) -> dict[str, Any]:
    expr = job.config.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError("condition config needs 'expr', a non-empty expression string")
    value = await renders.evaluate(expr, job.template_context)
    return {"result": bool(value)}
