"""How a node's code fails on purpose: with or without another attempt.

Both are the worker runtime's own ``NodeError`` (``workers.errors``), so a node written with
the SDK fails exactly as a built-in one does:

- ``NonRetryable("customer 7 does not exist")``: the node fails at once with that message,
  whatever its retry policy; another attempt would meet the same answer.
- ``Retryable("the billing service answered 503")``: this attempt fails with that message and
  the node's retry policy decides whether another one runs.

Any other exception raised by the node's code counts as retryable too (its message then
reads ``unexpected KeyError: 'id'``): the retry policy bounds what a bug costs, and a fixed
worker may be running by the next attempt. A config that its pydantic model refuses fails the
node without retry (``workers.errors.ConfigError``), and so does a template error in it.
"""

from __future__ import annotations

from workers.errors import NodeError


class NonRetryable(NodeError):
    """Fail the node now, with this message: no other attempt is made."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Retryable(NodeError):
    """Fail this attempt with this message; the node's retry policy may run another."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


__all__ = ["NodeError", "NonRetryable", "Retryable"]
