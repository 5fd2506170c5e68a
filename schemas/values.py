"""The one set of rules for every value that enters AOB: from a client, or from a worker.

A value that passes here can be stored and read back by every part of the system: encoded
in a Kafka record, folded into the coordinator's state and loaded again after a restart,
written to PostgreSQL (``jsonb`` and ``text``), read by a JavaScript client. Each rule is
there because a value that broke it once stopped a part of the system for every tenant:

- **no NUL** (``\\u0000``) in a string or a key: PostgreSQL refuses it in ``text`` and
  ``jsonb``, and a projector that cannot write a row cannot move on;
- **no lone surrogate** (``"\\ud800"``): Python's JSON parser lets one through as a code
  point that has no UTF-8 form, so encoding the event fails later, far from its cause;
- **a nesting limit**: parsers and validators recurse, and a state nested a few hundred
  levels deep was accepted, stored, and then could not be loaded again;
- **finite numbers** that every reader can hold: no NaN or Infinity (not JSON at all), no
  ``1e400`` (Python reads it as infinity), no integer past 64 bits (JavaScript, and most
  JSON libraries, cannot hold it; write it as a string);
- **sizes**: a longest string and a longest key. The size of a whole value is each
  caller's limit (a run input, a node output, an event).

``check_value`` walks a value without recursion, so a value nested 100,000 deep is refused
rather than crashing the checker; ``loads_strict`` parses request bodies with the same rules
and also refuses what ``json.loads`` quietly accepts (duplicate keys, NaN, Infinity).
Errors name the path of the bad value (``input.items[3].name``) and say what to do.
``writable`` makes a message that quotes a bad value (an error's reason) safe to store.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from schemas.errors import SchemaError

MAX_DEPTH = 64
MAX_STRING_CHARS = 1_000_000
MAX_KEY_CHARS = 1_000
MAX_INTEGER = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
# What no string may hold, whatever its size: the characters ``writable`` replaces.
_NEVER_IN_A_STRING = re.compile("[\x00\ud800-\udfff]")
_IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ValueLimits:
    """The bounds a value is checked against (the module doc says why each exists)."""

    max_depth: int = MAX_DEPTH
    max_string_chars: int = MAX_STRING_CHARS
    max_key_chars: int = MAX_KEY_CHARS
    max_integer: int = MAX_INTEGER


DEFAULT_LIMITS = ValueLimits()


class ValueRefused(SchemaError):
    """A value broke a rule. ``path`` says where (``input.items[3]``), ``reason`` what."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path or 'the value'}: {reason}")


def check_value(value: Any, where: str = "", limits: ValueLimits = DEFAULT_LIMITS) -> None:
    """Raise ``ValueRefused`` for the first part of ``value`` that breaks a rule.

    ``value`` is what ``json.loads`` makes (dicts, lists, str, int, float, bool, None);
    tuples count as lists. ``where`` names the value itself (``input``).
    """
    # (value, its path, its depth): a stack instead of recursion (see the module doc).
    todo: list[tuple[Any, str, int]] = [(value, where, 0)]
    while todo:
        item, path, depth = todo.pop()
        if isinstance(item, str):
            _check_string(item, path, limits.max_string_chars, "string")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > limits.max_integer:
                raise ValueRefused(
                    path,
                    f"the integer has {len(str(abs(item)))} digits; integers must fit in "
                    f"64 bits (at most {limits.max_integer}): send larger ones as strings",
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueRefused(path, "numbers must be finite (no NaN, no Infinity, no 1e400)")
        elif isinstance(item, dict):
            _check_depth(path, depth, limits.max_depth)
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueRefused(path, f"keys must be strings, not {type(key).__name__}")
                _check_string(key, path, limits.max_key_chars, "key")
                todo.append((child, _join(path, key), depth + 1))
        elif isinstance(item, list | tuple):
            _check_depth(path, depth, limits.max_depth)
            todo.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            raise ValueRefused(path, f"a {type(item).__name__} is not a JSON value")


def loads_strict(data: bytes | str, limits: ValueLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON text and check the value (``ValueRefused``, path from the top: ``""``).

    Stricter than ``json.loads``: a key given twice in one object, ``NaN`` and
    ``Infinity`` are refused (RFC 8259 has no NaN; a duplicate key means one of the two
    values is silently dropped). Text that is not JSON raises ``ValueError``.
    """
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueRefused("", f"the JSON nests deeper than {limits.max_depth} levels") from None
    check_value(value, "", limits)
    return value


def writable(text: str) -> str:
    """``text`` with each character that no string may hold (NUL, a lone surrogate) replaced
    by U+FFFD: for a message that quotes what a stranger sent (an error from a hostile
    response, a name a model made up) and must itself be stored."""
    return _NEVER_IN_A_STRING.sub("\ufffd", text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                # The object's path is not known while parsing: the key names it.
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise ValueRefused("", f"{name} is not a JSON number: numbers must be finite")


class _DuplicateKey(ValueRefused):
    def __init__(self, key: str) -> None:
        super().__init__("", f"the key {_shown(key)} appears twice in one object")


def _check_string(text: str, path: str, limit: int, what: str) -> None:
    if len(text) > limit:
        raise ValueRefused(path, f"a {what} of {len(text)} characters; the limit is {limit}")
    if "\x00" in text:
        raise ValueRefused(path, f"a {what} contains a NUL character (\\u0000), never allowed")
    if _SURROGATE.search(text):
        raise ValueRefused(
            path,
            f"a {what} contains a lone surrogate (a \\ud800-\\udfff escape without its "
            "pair): it is not valid Unicode",
        )


def _check_depth(path: str, depth: int, limit: int) -> None:
    if depth >= limit:
        raise ValueRefused(path, f"the value nests deeper than {limit} levels")


def _join(path: str, key: str) -> str:
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_shown(key)}]"


def _shown(key: str) -> str:
    """A key as a path shows it: quoted, escaped, and shortened if long."""
    # ASCII-escaped: a NUL or a lone surrogate in a key must not spoil the message itself.
    return json.dumps(key if len(key) <= 40 else key[:40] + "…")
