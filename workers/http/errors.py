"""Errors of the http node.

    workers.errors.NodeError
    └── HttpNodeError        root of ``workers.http``: the node fails with str(error)
        ├── Refused          the SSRF policy said no (never retryable; nothing was sent)
        ├── InvalidAllowlist AOB_HTTP_ALLOWLIST is malformed: the worker does not start
        ├── ResponseTooLarge the body passed AOB_HTTP_MAX_RESPONSE_BYTES (not retryable)
        ├── BadStatus        the final response was not 2xx (408/409/429/5xx retryable)
        └── RequestFailed    DNS, connect, read or timeout failure (retryable)

They derive from ``NodeError`` so that the executor reports them as NodeFailed with the
message as the reason, and the coordinator's retry policy decides on ``retryable`` ones.
"""

from __future__ import annotations

from workers.errors import NodeError


class HttpNodeError(NodeError):
    """Root of every error raised by ``workers.http``."""


class Refused(HttpNodeError):
    """A request the SSRF policy will not make. ``detail`` says why, without the prefix."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"refused: {detail}", retryable=False)


class InvalidAllowlist(HttpNodeError, ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ResponseTooLarge(HttpNodeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class BadStatus(HttpNodeError):
    def __init__(self, message: str, *, status: int, retryable: bool) -> None:
        self.status = status
        super().__init__(message, retryable=retryable)


class RequestFailed(HttpNodeError):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)
