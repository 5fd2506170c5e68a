"""How a handler's exception becomes a NodeFailed: its reason and whether to retry."""

from __future__ import annotations

from templating import TemplateError
from workers.errors import NodeError


def classify(exc: BaseException, timeout_s: float) -> tuple[str, bool]:
    """(what went wrong, retryable) for an exception raised by a handler."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g}s", True
    if isinstance(exc, TemplateError):
        # The author's template is wrong: the same input fails the same way every time.
        return f"template error: {exc}", False
    if isinstance(exc, NodeError):
        return str(exc), exc.retryable
    # A bug or an unforeseen fault in a handler: let the coordinator's retry policy decide.
    return f"unexpected {type(exc).__name__}: {exc}", True
