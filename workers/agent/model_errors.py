"""Which model errors deserve another try, and after how long.

408, 409, 429 and 5xx answers, lost connections and timeouts are transient; any other status
(400, 401, 403, 404, 422, ...) will fail the same way again, so it fails the node with the
model's own message. A server may say when to come back (``retry-after-ms``, ``retry-after``
in seconds or as an HTTP date) or whether to retry at all (``x-should-retry``).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

import openai

RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class ModelFailure:
    message: str  # for the node's reason: names the model and quotes the server
    retryable: bool
    retry_after_s: float | None = None  # what the server asked for, if anything


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait as the server asked (``retry-after-ms`` first, then ``retry-after``
    as seconds or an HTTP date), or None when it did not say or said nonsense."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it forgets to say so
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def server_message(exc: openai.APIError) -> str:
    """The message the server put in its error body (``{"error": {"message": ...}}``)."""
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return exc.message


def classify(exc: BaseException, model: str) -> ModelFailure | None:
    """A failure of a call to ``model``, or None when ``exc`` is not the model's doing (a
    bug: left to propagate)."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return ModelFailure(f"model {model} could not be reached: {exc.message}", True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers
        retryable = status in RETRYABLE_STATUSES or status >= 500
        should = headers.get("x-should-retry")
        if should in ("true", "false"):
            retryable = should == "true"
        text = server_message(exc)
        if retryable:
            return ModelFailure(
                f"model {model} is unavailable ({status}): {text}", True, retry_after(headers)
            )
        return ModelFailure(f"model {model} refused the request ({status}): {text}", False)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelFailure(f"model {model} sent an answer that is not Chat Completions", False)
    return None
