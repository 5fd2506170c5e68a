"""The ``http`` node: one HTTP exchange, redirects followed here, each hop through the guard.

Config (strings are templates over the run's context): ``method`` (default GET), ``url``,
``headers?`` (object), ``body?`` (a string is sent as is; any other JSON value is sent as
JSON), ``timeout_s?`` (the whole exchange, redirects included; also bounded by the attempt's
time limit). Output: ``{status, headers, body}`` (``workers.http.responses``, which also
says what becomes of a body that AOB cannot hold as it came).

Every request carries ``Idempotency-Key: <run>/<node>/<attempt>`` unless the author set one,
so the called system can tell a redelivered attempt from a new one.

Redirects and what follows them. A header is written for the origin the author named; a
redirect to another origin (scheme, host or port) is the other server's choice, not the
author's. So on a cross-origin hop only the headers in ``CROSS_ORIGIN_SAFE_HEADERS`` go on
(content negotiation, the idempotency key), and only if no secret's value is in them: an
``X-Api-Key``, a ``Cookie``, any header AOB cannot know the meaning of, stays behind. A hop
from https to http is refused outright: stripping headers would still send the URL and, on
307/308, the body in clear, and a downgrade is what a meddler on the path asks for; an
author who means the http URL can write it. A cross-origin 307/308 whose body holds a
secret's value is refused as well (the body would follow).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from templating import renders
from workers.errors import ConfigError
from workers.http.errors import BadStatus, Refused, RequestFailed, ResponseTooLarge
from workers.http.responses import (
    decode_body,
    is_retryable_status,
    output_headers,
    shown_url,
    status_reason,
)
from workers.http.targets import parse_url, target_of

if TYPE_CHECKING:  # at run time this would import workers.handlers, which imports us
    from workers.handlers.base import Job

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# The headers that may follow a redirect to another origin (module doc): they say what the
# client accepts and sends, never who it is. Every other header the config set is dropped.
CROSS_ORIGIN_SAFE_HEADERS = frozenset(
    {"accept", "accept-language", "content-language", "content-type", "user-agent"}
    | {"idempotency-key"}
)
_TOKEN = re.compile(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


@dataclass
class Exchange:
    """The request as the node will send it, after rendering and validation."""

    method: str
    url: httpx.URL
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)  # content= or json= for httpx
    timeout_s: float = 30.0
    # Values of the secrets the config read: headers and bodies holding one stay at the
    # origin the author named.
    secrets: tuple[str, ...] = ()


def exchange_from_config(
    config: dict[str, Any], idempotency_key: str, default_timeout_s: float
) -> Exchange:
    """The rendered ``config`` checked and shaped into an ``Exchange`` (ConfigError or
    Refused when it cannot be one)."""
    method = config.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.match(method):
        raise ConfigError(f"http config 'method' must be an HTTP method, not {method!r}")
    url_text = config.get("url")
    if not isinstance(url_text, str) or not url_text:
        raise ConfigError("http config needs a 'url' string")
    url = parse_url(url_text.strip())
    raw_headers = config.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise ConfigError("http config 'headers' must be an object")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"http header {name!r} must be a string or a number")
        headers[str(name)] = str(value)
    if not any(name.lower() == "idempotency-key" for name in headers):
        headers["Idempotency-Key"] = idempotency_key
    body: dict[str, Any] = {}
    if "body" in config and config["body"] is not None:
        raw = config["body"]
        body = {"content": raw.encode("utf-8")} if isinstance(raw, str) else {"json": raw}
    timeout_s = config.get("timeout_s", default_timeout_s)
    if not isinstance(timeout_s, int | float) or isinstance(timeout_s, bool) or timeout_s <= 0:
        raise ConfigError(f"http config 'timeout_s' must be a positive number, not {timeout_s!r}")
    return Exchange(method.upper(), url, headers, body, float(timeout_s))


class HttpHandler:
    """Takes its ``httpx.AsyncClient`` (one per worker process, built by ``build_client``
    with the pinned transport): the handler itself never resolves or connects."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_response_bytes: int,
        default_timeout_s: float = 30.0,
    ) -> None:
        self.client = client  # guarded: the agent's MCP tools connect through it too
        self._client = client
        self._max_bytes = max_response_bytes
        self._default_timeout = default_timeout_s

    async def __call__(self, job: Job) -> dict[str, Any]:
        config = await renders.render_value(job.config, job.template_context)
        if not isinstance(config, dict):
            raise ConfigError("http config must be an object")
        secrets = tuple(v for v in job.secrets.values() if v)
        return await self.request(config, job.task.idempotency_key, job.task.timeout_s, secrets)

    async def request(
        self,
        config: dict[str, Any],
        idempotency_key: str,
        time_limit_s: float | None = None,
        secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """One exchange as ``config`` (already rendered: no template is read here) says,
        through this handler's guarded client; the agent's ``http`` tool calls this too.
        ``time_limit_s`` bounds the config's own ``timeout_s``."""
        exchange = exchange_from_config(config, idempotency_key, self._default_timeout)
        if time_limit_s:
            exchange.timeout_s = min(exchange.timeout_s, time_limit_s)
        exchange.secrets = secrets
        try:
            async with asyncio.timeout(exchange.timeout_s):
                return await self._exchange(exchange)
        except TimeoutError:
            raise RequestFailed(
                f"{exchange.method} {shown_url(exchange.url)} timed out after "
                f"{exchange.timeout_s:g}s"
            ) from None

    async def _exchange(self, ex: Exchange) -> dict[str, Any]:
        method, url, headers, body = ex.method, ex.url, dict(ex.headers), ex.body
        for hop in range(MAX_REDIRECTS + 1):
            request = self._client.build_request(
                method, url, headers=headers, timeout=ex.timeout_s, **body
            )
            try:
                response = await self._client.send(request, stream=True)
            except Refused as e:
                if hop == 0:
                    raise
                raise Refused(f"redirect {hop} to {shown_url(url)} — {e.detail}") from e
            except httpx.TimeoutException as e:
                raise RequestFailed(f"{method} {shown_url(url)} timed out: {e!r}") from e
            except httpx.HTTPError as e:
                raise RequestFailed(
                    f"{method} {shown_url(url)} failed: {type(e).__name__}: {e}"
                ) from e
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    next_url = _next_hop(url, location, hop + 1)
                    if hop == MAX_REDIRECTS:
                        raise Refused(
                            f"redirect {hop + 1} to {shown_url(next_url)} — more than "
                            f"{MAX_REDIRECTS} redirects"
                        )
                    method, body = _redirected(method, body, response.status_code)
                    if _origin(next_url) != _origin(url):
                        _check_cross_origin(url, next_url, body, ex.secrets, hop + 1)
                        headers = cross_origin_headers(headers, ex.secrets)
                    url = next_url
                    continue
                data = await self._read(response, method, url)
            finally:
                await response.aclose()
            if 200 <= response.status_code < 300:
                content_type = response.headers.get("content-type", "")
                # In a thread: parsing and checking a body of up to the cap (10 MiB) takes
                # long enough to stall the other tasks.
                body = await asyncio.to_thread(decode_body, content_type, data)
                return {
                    "status": response.status_code,
                    "headers": output_headers(response.headers),
                    "body": body,
                }
            raise BadStatus(
                status_reason(method, url, response, data),
                status=response.status_code,
                retryable=is_retryable_status(response.status_code),
            )
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    async def _read(self, response: httpx.Response, method: str, url: httpx.URL) -> bytes:
        """The body, read no further than the cap (decompressed bytes count)."""
        too_large = ResponseTooLarge(
            f"{method} {shown_url(url)}: the response body exceeds the limit of "
            f"{self._max_bytes} bytes (AOB_HTTP_MAX_RESPONSE_BYTES)"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise too_large
                chunks.append(chunk)
        except httpx.HTTPError as e:
            raise RequestFailed(
                f"{method} {shown_url(url)}: reading the body failed: {type(e).__name__}: {e}"
            ) from e
        return b"".join(chunks)


def _next_hop(url: httpx.URL, location: str, hop: int) -> httpx.URL:
    try:
        next_url = url.join(location)
    except httpx.InvalidURL as e:
        reason = f"redirect {hop}: invalid Location {location!r}"
        raise RequestFailed(reason, retryable=False) from e
    try:
        target_of(next_url)
    except Refused as e:
        raise Refused(f"redirect {hop} to {shown_url(next_url)} — {e.detail}") from e
    return next_url


def _redirected(method: str, body: dict[str, Any], status: int) -> tuple[str, dict[str, Any]]:
    """Method and body for the next hop, as browsers and httpx do it: 303 turns into GET,
    301/302 turn a POST into GET; 307/308 keep both."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", {}
    return method, body


def cross_origin_headers(headers: dict[str, str], secrets: tuple[str, ...] = ()) -> dict[str, str]:
    """The headers that go on to another origin: the safe ones holding no secret."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower() in CROSS_ORIGIN_SAFE_HEADERS and not any(s in v for s in secrets)
    }


def _check_cross_origin(
    url: httpx.URL, next_url: httpx.URL, body: dict[str, Any], secrets: tuple[str, ...], hop: int
) -> None:
    """Refused: a hop from https to http, or a body holding a secret going to another
    origin (module doc)."""
    if url.scheme == "https" and next_url.scheme != "https":
        raise Refused(
            f"redirect {hop} to {shown_url(next_url)} — from https to {next_url.scheme}: the "
            "request would leave TLS (write the http URL in the config if it is meant)"
        )
    if secrets and body and _holds_secret(body, secrets):
        raise Refused(
            f"redirect {hop} to {shown_url(next_url)} — the request body holds a secret, "
            "which goes to the origin the config names only"
        )


def _holds_secret(body: dict[str, Any], secrets: tuple[str, ...]) -> bool:
    if "content" in body:
        text = body["content"].decode("utf-8", "replace")
    else:
        text = json.dumps(body.get("json"), ensure_ascii=False)
    # JSON escapes some characters of a value; its escaped spelling is looked for too.
    return any(s in text or json.dumps(s)[1:-1] in text for s in secrets)


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port
