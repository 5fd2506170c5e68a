"""What the node makes of a response: its output, or why it failed. Pure functions.

The body in the output is the parsed JSON value when the content type is JSON
(``application/json`` or ``*+json``), else text when the bytes decode (declared charset, or
UTF-8), else ``{"base64": "...", "content_type": "..."}``: a JSON output cannot carry raw
bytes, and the marker keeps binary apart from a text body that happens to look like base64.

Every body ends up a value AOB can hold (``schemas.values``), so an answer from a server the
author does not control never crashes the worker nor fails a 2xx exchange that happened:

- a JSON body is parsed by the rules (``loads_strict``); one they refuse (nested deeper than
  64, NaN or Infinity, ``1e400``, an integer past 64 bits, a NUL or a lone surrogate in a
  string, a key given twice) is kept as its text, as a body that says JSON but is not JSON
  at all always was. The text loses nothing: ``\u0000`` stays six characters, both
  values of a twice-given key stay there, and a later node or a model can still read it;
- text that no string may hold (a NUL byte, or a lone surrogate that a charset such as
  UTF-7 can make) is kept as base64, like binary.

A text of more than 1,000,000 characters fails the node at the worker's output check
(``workers.outputs``), with the path ``output.body``.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from schemas.values import ValueRefused, loads_strict, writable

RETRYABLE_STATUSES = frozenset({408, 409, 429})
SNIPPET_CHARS = 200
BINARY_PREFIXES = ("image/", "audio/", "video/", "font/")
BINARY_TYPES = frozenset(
    {"application/octet-stream", "application/pdf", "application/zip", "application/gzip"}
)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def is_json_type(content_type: str) -> bool:
    media = _media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def decode_body(content_type: str, data: bytes) -> Any:
    """The body as the output carries it (see the module doc)."""
    media = _media_type(content_type)
    binary = media in BINARY_TYPES or media.startswith(BINARY_PREFIXES)
    if not binary:
        try:
            text = data.decode(_charset(content_type))
        except (UnicodeDecodeError, LookupError):
            pass
        else:
            if writable(text) == text:  # else no string may hold it: base64, as binary
                if is_json_type(content_type) and text.strip():
                    try:
                        return loads_strict(text)
                    except (ValueError, ValueRefused):
                        return text  # not JSON that AOB can hold: the text is still worth having
                return text
    return {"base64": base64.b64encode(data).decode("ascii"), "content_type": media}


def output_headers(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names; repeated headers joined with ", " as HTTP allows (Set-Cookie too:
    the node's output is for templates, not a cookie jar)."""
    merged: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def shown_url(url: httpx.URL) -> str:
    """The URL for a reason: without credentials, nor its query, which often carries
    tokens (reasons are kept in the run's history for everyone who may read the run)."""
    shown = url.copy_with(userinfo=b"", query=None, fragment=None)
    return f"{shown}?…" if url.query else str(shown)


def snippet(data: bytes) -> str:
    text = data[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"


def status_reason(method: str, url: httpx.URL, response: httpx.Response, body: bytes) -> str:
    reason = f"{method} {shown_url(url)} answered {response.status_code}"
    if response.reason_phrase:
        reason += f" {response.reason_phrase}"
    retry_after = response.headers.get("retry-after")
    if retry_after:
        reason += f" (Retry-After: {retry_after})"
    if body:
        reason += f": {snippet(body)}"
    return reason
