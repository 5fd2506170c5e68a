"""What the node makes of a response: its output, or why it failed. Pure functions.

The body in the output is the parsed JSON value when the content type is JSON
(``application/json`` or ``*+json``), else text when the bytes decode (declared charset, or
UTF-8), else ``{"base64": "...", "content_type": "..."}``: a JSON output cannot carry raw
bytes, and the marker keeps binary apart from a text body that happens to look like base64.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

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
            if is_json_type(content_type) and text.strip():
                try:
                    return json.loads(text)
                except ValueError:
                    return text  # says JSON but is not: the text is still worth having
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
