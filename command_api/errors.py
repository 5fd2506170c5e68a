"""Errors of the command API, each mapped to one HTTP status in ``problems.py``.

CommandError                 (status, title, detail, extra fields for the problem body)
├── BadRequest          400  the body is not JSON: not UTF-8, a syntax error, NaN or
│                            Infinity, a key twice in one object (the path named); or a
│                            header is malformed (Idempotency-Key)
├── Unauthorized        401  no API key, or not one we know
├── Forbidden           403  the key lacks the scope the call needs (``scope``: which)
├── NotFound            404  no such workflow, version, run or route
├── Conflict            409  an identical request is still being processed; a run to fork
│                            whose events the log does not show yet
├── PayloadTooLarge     413  the body or a value in it is over its limit: the run input, a
│                            definition too large for a run's event, an event
├── UnsupportedMedia    415  a body that is not sent as ``application/json``
├── InvalidInput        422  JSON, but not a valid command: a value that breaks a rule of
│                            ``schemas.values`` (NUL, lone surrogate, nesting, a number past
│                            64 bits, a string or key too long), a field that breaks its
│                            model, a path parameter that breaks a rule, an event that
│                            cannot be encoded. ``errors`` lists every reason found, each
│                            starting with the path of its value (``input.items[3].name: …``)
├── RateLimited         429  a limit holds the command back (``retry_after`` seconds, sent as
│                            ``Retry-After``); ``limit`` names it: its name, its numbers,
│                            the wait (``limits.admission_check``, the request rate)
└── NotAvailable        501  a command this release does not offer yet

400 or 422: 400 when the text is not JSON that every reader reads alike, 422 when it is, and
the value it holds is not one AOB takes. The body is judged before the caller is
authenticated (``command_api.door``), as FastAPI judged JSON before: a body that is no
command gets its 400/415/422 even without an API key.

Errors of the packages the routes use are mapped in ``problems.py`` too: ``infra.run_log``'s
PositionOutsideRun (a fork point outside the run) is a 422, RunNotInLog a 409.

A subclass names its status in its class statement; its title, the status's reason phrase, comes
from ``TITLES``, the one table of them (``problems.py`` titles FastAPI's own errors from it too).
"""

from __future__ import annotations

from typing import Any

# The reason phrase (RFC 9110) of each status the API answers with: a problem body's title.
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class CommandError(Exception):
    status = 500
    title = TITLES[500]

    def __init_subclass__(cls, *, status: int, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status, cls.title = status, TITLES[status]

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadRequest(CommandError, status=400): ...


class Unauthorized(CommandError, status=401): ...


class Forbidden(CommandError, status=403):
    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the {scope!r} scope", scope=scope)


class NotFound(CommandError, status=404): ...


class Conflict(CommandError, status=409): ...


class PayloadTooLarge(CommandError, status=413): ...


class UnsupportedMedia(CommandError, status=415): ...


class InvalidInput(CommandError, status=422): ...


class RateLimited(CommandError, status=429):
    def __init__(self, detail: str, retry_after: float, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class NotAvailable(CommandError, status=501): ...
