"""Errors of template rendering and expression evaluation.

    TemplatingError
    ├── TemplateError       a template or expression that cannot be rendered: bad syntax, an
    │   │                   undefined name, a sandbox refusal, a value too large
    │   └── RenderStopped   its render was stopped: it ran past the time or memory limit of
    │                       the render pool, or its process died (``templating.renders``)
    └── RenderPoolError     the render pool could not run a render at all (closed, or broken
                            again as soon as it was replaced): not the template's fault

A ``TemplateError`` is a business outcome (the workflow author's template is wrong), never an
infrastructure fault: a worker reports it as a non-retryable ``NodeFailed``. A
``RenderPoolError`` is a fault of the worker's own: the node's retry policy decides.
"""

from __future__ import annotations

from typing import Literal


class TemplatingError(Exception):
    """Root of every error raised by ``templating``."""


class TemplateError(TemplatingError):
    """``expression`` could not be rendered; ``cause`` says why, in Jinja's words.

    Callers add where it happened (the node id, the config key): this package knows neither.
    """

    def __init__(self, expression: str, cause: str) -> None:
        self.expression = expression
        self.cause = cause
        super().__init__(f"{_shorten(expression)!r}: {cause}")


Limit = Literal["time", "memory", "process"]


class RenderStopped(TemplateError):
    """The render of ``expression`` was stopped at ``limit``: ``"time"`` (it ran longer than
    the pool allows), ``"memory"`` (it needed more), or ``"process"`` (its process died, by a
    crash or a kill); its process was replaced."""

    def __init__(self, expression: str, cause: str, limit: Limit) -> None:
        self.limit = limit
        super().__init__(expression, cause)


class RenderPoolError(TemplatingError):
    """The render pool could not run a render; ``cause`` says why."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(cause)


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
