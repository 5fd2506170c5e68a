"""Every error as ``application/problem+json`` (RFC 9457), mapped in one place.

Routes raise domain errors (``command_api.errors``, ``schemas.InvalidWorkflow``); FastAPI's
own validation and routing errors are translated here too, so a client never sees a bare
500 or a traceback for bad input. The 503 of ``unexpected`` is for faults that are not the
caller's: no input may reach it (``command_api.door`` refuses what would, and
``run_submission.encode_record`` turns an event that cannot be encoded into a 422).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from command_api.errors import (
    TITLES,
    CommandError,
    Conflict,
    InvalidInput,
    RateLimited,
    Unauthorized,
)
from infra.run_log import PositionOutsideRun, RunLogError, RunNotInLog
from schemas.errors import InvalidWorkflow
from schemas.values import join_path

log = logging.getLogger("aob.command_api")

PROBLEM = "application/problem+json"

# A body can break a rule once per item (2,000 edges to unknown nodes): the answer lists this
# many reasons, then says how many more there are, so that it stays small.
MAX_REASONS = 50


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


def _unavailable(request: Request, failure: str, detail: str) -> JSONResponse:
    """A 503 for a fault that is not the caller's (Kafka, Postgres, MinIO unreachable): the
    command was not accepted, and retrying it (with the same Idempotency-Key) is safe."""
    log.exception("%s on %s %s", failure, request.method, request.url.path)
    return problem(503, TITLES[503], f"{detail}; retry later", {"Retry-After": "1"})


def _field_errors(exc: RequestValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        # Paths start at the command (``definition.nodes[2].id``, ``node_id``), as the door's
        # do: FastAPI's first step, body or path, is left out.
        loc = list(err.get("loc", ()))
        where = ""
        for part in loc[1:] if loc[:1] in (["body"], ["path"]) else loc:
            where = join_path(where, part)
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = "unknown field (not allowed)"
        out.append(f"{where or 'body'}: {message}")
    return out


def _invalid(title: str, lead: str, reasons: list[str]) -> JSONResponse:
    """422 with every reason, up to MAX_REASONS of them."""
    shown = reasons[:MAX_REASONS]
    more = len(reasons) - len(shown)
    if more:
        shown.append(f"... and {more} more")
    return problem(422, title, lead + "; ".join(shown), errors=shown)


def install(app: FastAPI) -> None:
    @app.exception_handler(CommandError)
    async def command_error(request: Request, exc: CommandError) -> JSONResponse:
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        if isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        return problem(exc.status, exc.title, exc.detail, headers, **exc.extra)

    @app.exception_handler(RunLogError)
    async def run_log_error(request: Request, exc: RunLogError) -> JSONResponse:
        # Reading a run's history from the log (forks): a point outside the run is the
        # caller's to fix; a run whose events the log does not show yet (just submitted,
        # or a lagging follower) is worth a retry.
        if isinstance(exc, PositionOutsideRun):
            mapped: CommandError = InvalidInput(str(exc))
        elif isinstance(exc, RunNotInLog):
            mapped = Conflict(f"the run's events are not in the log yet; retry ({exc})")
        else:
            return _unavailable(
                request, "reading the log failed", f"the run's history could not be read ({exc})"
            )
        return await command_error(request, mapped)

    @app.exception_handler(InvalidWorkflow)
    async def invalid_workflow(request: Request, exc: InvalidWorkflow) -> JSONResponse:
        return _invalid("Invalid workflow", "the workflow definition is invalid: ", exc.reasons)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = next((e.get("ctx", {}) for e in errors if e.get("type") == "json_invalid"), {})
            return problem(
                400, TITLES[400], f"the body is not valid JSON: {ctx.get('error', 'parse error')}"
            )
        return _invalid(TITLES[422], "", _field_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        # Starlette's own answers (routing, the body limit) are told in our words; any other
        # HTTPException keeps its detail and a generic title.
        ours = {
            404: f"no such endpoint: {request.method} {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
            413: "the request body is over the size limit",
        }.get(exc.status_code)
        title = TITLES[exc.status_code] if ours else "Error"
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, title, ours or detail, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable(
            request,
            "unexpected error",
            f"the command could not be accepted ({type(exc).__name__})",
        )
