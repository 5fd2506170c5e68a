"""Sandboxed Jinja2 templates and expressions over a run's context.

``render_value`` renders node configs, ``evaluate`` computes condition expressions; both run
in one hardened sandbox (``templating.sandbox``) and raise ``TemplateError`` on failure.
They run in the calling process, with no bound on time or memory: the workers render through
``templating.renders`` instead, which runs them in processes stopped at their limits.
"""

from templating.errors import RenderPoolError, RenderStopped, TemplateError, TemplatingError
from templating.render import evaluate, render_string, render_value
from templating.sandbox import MAX_OUTPUT_CHARS

__all__ = [
    "MAX_OUTPUT_CHARS",
    "RenderPoolError",
    "RenderStopped",
    "TemplateError",
    "TemplatingError",
    "evaluate",
    "render_string",
    "render_value",
]
