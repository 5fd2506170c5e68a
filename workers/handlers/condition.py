"""``condition``: ``config.expr`` evaluated over the context; output ``{"result": bool}``.

The coordinator follows the edges whose ``when`` matches ``"true"``/``"false"``.
"""

from __future__ import annotations

from typing import Any

from aob import Job, node
from templating import renders
from workers.errors import ConfigError


# Its expression is evaluated, not rendered: the SDK must leave the config as written.
@node("condition", render_config=False)
async def condition(job: Job[Any]) -> dict[str, Any]:
    """Evaluates its config's `expr` over the run context; output {"result": bool}."""
    expr = job.config.get("expr")
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError("condition config needs 'expr', a non-empty expression string")
    value = await renders.evaluate(expr, job.template_context)
    return {"result": bool(value)}
