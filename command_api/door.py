"""The command API's door: what a /v1 request carries is checked here, before FastAPI, a
route or the database sees it.

Every value that enters AOB obeys one set of rules, ``schemas.values`` (no NUL, no lone
surrogate, a nesting limit, finite 64-bit numbers, bounded strings and keys): a value that
broke one once stopped a projector, or a coordinator, for every tenant. The door applies
them to all a command is made of:

- the body, parsed once, strictly (``loads_strict``), by ``DoorRoute``, the route class of
  the /v1 router. FastAPI reads a body with ``await request.json()``; the door hands it a
  request whose ``json()`` is that strict parse, already done, so FastAPI validates the
  command from it and nothing parses the body a second time (the idempotency fingerprint
  reads it through ``parsed_body``). A subclass of ``Request`` is FastAPI's documented way
  to change how a body is read; a dependency would run after FastAPI had parsed the body;
  a middleware would parse it for every route, without knowing which take one;
- the path parameters (``run_id``, ``node_id``): Starlette decodes ``%00`` into a NUL;
- the headers the routes use (``Idempotency-Key``).

A refusal names the path of the bad value from the top of the command (``input.items[3]``,
``definition.nodes[2].config.url``, ``comment``, ``run_id``): the status codes are drawn in
``command_api.errors``. The door stands before authentication, as FastAPI's own JSON
parsing did: a body that is no command costs no database round trip, and its refusal says
nothing about any tenant.

The cost, measured on 2 cores (parse and rules; ``json.loads`` alone in brackets): a typical
submission of 115 bytes, 15 µs (3 µs); a 200 KB body of 1,300 small objects, 4.4 ms
(1.5 ms); a 200 KB string, 0.2 ms (0.2 ms). Per request through FastAPI, the door adds
10-40 µs to a typical submission.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from command_api.errors import BadRequest, InvalidInput, UnsupportedMedia
from command_api.idempotency import check_key
from schemas.values import InvalidJson, ValueLimits, ValueRefused, check_value, loads_strict

# Ids in URLs are uuids (runs) or node ids (64 characters at most): 200 leaves room.
MAX_PATH_PARAMETER_CHARS = 200
_PATH_PARAMETER_LIMITS = ValueLimits(max_string_chars=MAX_PATH_PARAMETER_CHARS)


class DoorRoute(APIRoute):
    """A route whose request passes the door before FastAPI's handler runs."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        takes_body = self.body_field is not None

        async def door(request: Request) -> Response:
            check_path_parameters(request.path_params)
            check_headers(request.headers)
            if takes_body:
                request = _ParsedRequest(request.scope, request.receive)
                if await request.body():
                    check_media_type(request.headers.get("content-type"))
                    await request.json()  # refused here, where the problem handlers see it
            return await handle(request)

        return door


class _ParsedRequest(Request):
    """A request whose ``json()`` is the door's strict parse, done once and kept."""

    _parsed: Any

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            self._parsed = parse_body(await self.body())
        return self._parsed


async def parsed_body(request: Request) -> Any:
    """The body of a request that came through a ``DoorRoute``, as the door parsed it; None
    if it has none."""
    if not isinstance(request, _ParsedRequest):
        raise TypeError("parsed_body needs a request of a DoorRoute that takes a body")
    return await request.json() if await request.body() else None


def parse_body(body: bytes) -> Any:
    """The body's JSON value: 400 if it is not JSON, 422 if its value breaks a rule."""
    try:
        return loads_strict(body)
    except InvalidJson as e:
        raise BadRequest(f"the body is not valid JSON: {_where(e)}") from None
    except ValueRefused as e:
        raise InvalidInput(_where(e), errors=[_where(e)]) from None
    except UnicodeDecodeError as e:
        raise BadRequest(
            f"the body is not valid JSON: it is not UTF-8 (byte {e.object[e.start]:#04x} at "
            f"position {e.start})"
        ) from None
    except ValueError as e:  # json.JSONDecodeError: where the text stops being JSON
        raise BadRequest(f"the body is not valid JSON: {e}") from None


def check_media_type(content_type: str | None) -> None:
    """415 unless the body is sent as JSON (``application/json`` or ``application/*+json``),
    the types FastAPI reads as JSON: it takes any other body as bytes."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    given = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
    raise UnsupportedMedia(
        f"the body must be JSON, sent with Content-Type: application/json ({given} was sent)"
    )


def check_path_parameters(parameters: Mapping[str, Any]) -> None:
    """422 for a path parameter that breaks a rule of ``schemas.values`` or is longer than
    ``MAX_PATH_PARAMETER_CHARS``: it is used as a key in the database and in events.

    A %-escape that spells no character (``%ED%A0%80``, a surrogate) is decoded by the server
    as U+FFFD, the replacement character: no id has one, so it is refused as what it was.
    """
    for name, value in parameters.items():
        try:
            check_value(value, name, _PATH_PARAMETER_LIMITS)
        except ValueRefused as e:
            raise InvalidInput(_where(e), errors=[_where(e)]) from None
        if isinstance(value, str) and "\ufffd" in value:
            reason = (
                f"{name}: the URL spells it with bytes that are not UTF-8 (a %-escape such as "
                "%ED%A0%80, a lone surrogate, is no character)"
            )
            raise InvalidInput(reason, errors=[reason])


def check_headers(headers: Mapping[str, str]) -> None:
    """400 for a malformed header that a route uses. Header values come decoded as
    Latin-1, so they hold no surrogate; a NUL or a control character is not printable."""
    key = headers.get("idempotency-key")
    if key is not None:
        check_key(key)


def _where(refused: ValueRefused) -> str:
    return f"{refused.path or 'body'}: {refused.reason}"
