"""Errors of the command API, each mapped to one HTTP status in ``problems.py``.

CommandError                 (status, title, detail, extra fields for the problem body)
├── BadRequest          400  the body is not JSON, or a header is malformed
├── Unauthorized        401  no API key, or not one we know
├── NotFound            404  no such workflow, version, run or route
├── Conflict            409  an identical request is still being processed; a run to fork
│                            whose events the log does not show yet
├── PayloadTooLarge     413  the body or a value in it is over its limit
├── InvalidInput        422  the body is JSON but not a valid command (``errors`` lists why)
├── RateLimited         429  the tenant is over its rate (``retry_after`` seconds)
└── NotAvailable        501  a command this release does not offer yet

Errors of the packages the routes use are mapped in ``problems.py`` too: ``infra.run_log``'s
PositionOutsideRun (a fork point outside the run) is a 422, RunNotInLog a 409.
"""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(CommandError):
    status, title = 400, "Bad Request"


class Unauthorized(CommandError):
    status, title = 401, "Unauthorized"


class NotFound(CommandError):
    status, title = 404, "Not Found"


class Conflict(CommandError):
    status, title = 409, "Conflict"


class PayloadTooLarge(CommandError):
    status, title = 413, "Content Too Large"


class InvalidInput(CommandError):
    status, title = 422, "Unprocessable Content"


class RateLimited(CommandError):
    status, title = 429, "Too Many Requests"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class NotAvailable(CommandError):
    status, title = 501, "Not Implemented"
