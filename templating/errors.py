"""Errors of template rendering and expression evaluation.

    TemplatingError
    └── TemplateError   a template or expression that cannot be rendered: bad syntax, an
                        undefined name, a sandbox refusal, a value too large

A ``TemplateError`` is a business outcome (the workflow author's template is wrong), never an
infrastructure fault: a worker reports it as a non-retryable ``NodeFailed``.
"""

from __future__ import annotations


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


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
