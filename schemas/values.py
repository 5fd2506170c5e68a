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
and also refuses what ``json.loads`` quietly accepts (duplicate keys, NaN, Infinity): those
raise ``InvalidJson``, text that is JSON to no reader, where the other refusals are JSON
values that break a rule of ours. Errors name the path of the bad value
(``input.items[3].name``, see ``join_path``) and say what to do.

Every value a command or a worker brings passes here, so the check is built to be cheap: a
first pass without paths looks at the value one nesting level at a time and lets C do the
work per level (the longest string, a NUL, a surrogate, the largest integer); only a value
it doubts is walked again, slowly, to name the path of what is wrong.
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


class InvalidJson(ValueRefused):
    """Text that no JSON reader should take: NaN or Infinity (RFC 8259 has neither), or a key
    given twice in one object (which value counts differs between readers; I-JSON, RFC 7493,
    forbids it). ``path`` is the object or number concerned."""


def check_value(value: Any, where: str = "", limits: ValueLimits = DEFAULT_LIMITS) -> None:
    """Raise ``ValueRefused`` for the first part of ``value`` that breaks a rule.

    ``value`` is what ``json.loads`` makes (dicts, lists, str, int, float, bool, None);
    tuples count as lists. ``where`` names the value itself (``input``).
    """
    if not _doubtful(value, limits):
        return
    _refuse_first(value, where, limits)


def _doubtful(value: Any, limits: ValueLimits) -> bool:
    """False if ``value`` surely keeps every rule; True if the walk with paths must look.

    One nesting level at a time: the level's items are sorted by type in one loop, then each
    rule is one C call over a whole kind (the longest string, a NUL or a surrogate in all of
    them joined, the largest integer). Anything unusual (a tuple, a subclass) is doubtful.
    """
    level: list[Any] = [value]
    depth = 0
    while level:
        strings: list[str] = []
        ints: list[int] = []
        floats: list[float] = []
        dicts: list[dict[Any, Any]] = []
        lists: list[list[Any]] = []
        for item in level:
            kind = type(item)
            if kind is str:
                strings.append(item)
            elif kind is dict:
                dicts.append(item)
            elif kind is list:
                lists.append(item)
            elif kind is int:
                ints.append(item)
            elif kind is float:
                floats.append(item)
            elif item is not None and kind is not bool:
                return True
        if (dicts or lists) and depth >= limits.max_depth:
            return True
        level = []
        if dicts:
            keys = [key for d in dicts for key in d]
            if not set(map(type, keys)) <= {str}:
                return True
            if keys and max(map(len, keys)) > limits.max_key_chars:
                return True
            strings += keys
            for d in dicts:
                level += d.values()
        for each in lists:
            level += each
        if strings:
            if max(map(len, strings)) > limits.max_string_chars:
                return True
            text = "".join(strings)
            if "\x00" in text or not (text.isascii() or _encodes(text)):
                return True
        if ints and max(map(abs, ints)) > limits.max_integer:
            return True
        if floats and not all(map(math.isfinite, floats)):
            return True
        depth += 1
    return False


def _encodes(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form, i.e. no lone surrogate (faster than a regex)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refuse_first(value: Any, where: str, limits: ValueLimits) -> None:
    """The walk that names paths: raise ``ValueRefused`` for the first bad part of ``value``."""
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
                raise ValueRefused(path, _integer_reason(_digits(item), limits))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueRefused(path, "numbers must be finite (no NaN, no Infinity, no 1e400)")
        elif isinstance(item, dict):
            _check_depth(path, depth, limits.max_depth)
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueRefused(path, f"keys must be strings, not {type(key).__name__}")
                _check_string(key, path, limits.max_key_chars, "key")
                todo.append((child, join_path(path, key), depth + 1))
        elif isinstance(item, list | tuple):
            _check_depth(path, depth, limits.max_depth)
            todo.extend((child, join_path(path, i), depth + 1) for i, child in enumerate(item))
        else:
            raise ValueRefused(path, f"a {type(item).__name__} is not a JSON value")


def loads_strict(data: bytes | str, limits: ValueLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON text and check the value (``ValueRefused``, path from the top: ``""``).

    Stricter than ``json.loads``: a key given twice in one object, ``NaN`` and ``Infinity``
    raise ``InvalidJson`` (RFC 8259 has no NaN; a duplicate key means one of the two values is
    silently dropped). Text that is not JSON at all raises ``ValueError``
    (``json.JSONDecodeError``, or ``UnicodeDecodeError`` for bytes that are not UTF-8).
    Bytes that spell a surrogate in UTF-8's pattern (``\\xed\\xa0\\x80``) are read as
    ``json.loads`` reads them, as that surrogate, so the refusal can name where it is.
    """
    try:
        value = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueRefused("", f"the JSON nests deeper than {limits.max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except (InvalidJson, ValueError) as e:
        # InvalidJson from the hooks (which cannot know where they are), or an integer past
        # Python's int-to-text limit: parse again to find the path.
        raise _locate(data, limits) or e from None
    check_value(value, "", limits)
    return value


def join_path(path: str, key: str | int) -> str:
    """The path of ``key`` (a member name or a list index) inside the value at ``path``:
    ``input.items[3].name``; a name that is not an identifier is quoted: ``input["a b"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{_shown(key)}]"


def writable(text: str) -> str:
    """``text`` with each character that no string may hold (NUL, a lone surrogate) replaced
    by U+FFFD: for a message that quotes what a stranger sent (an error from a hostile
    response, a name a model made up) and must itself be stored."""
    return _NEVER_IN_A_STRING.sub("\ufffd", text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise InvalidJson("", _duplicate_reason(pairs))
    return out


def _no_constant(name: str) -> Any:
    raise InvalidJson("", _constant_reason(name))


def _duplicate_reason(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return f"the key {_shown(key)} appears twice in one object"
        seen.add(key)
    return "a key appears twice in one object"


def _constant_reason(name: str) -> str:
    return f"{name} is not a JSON number: numbers must be finite"


def _digits(number: int) -> int:
    try:
        return len(str(abs(number)))
    except ValueError:  # past Python's int-to-text limit (4,300 digits): near enough
        return int(abs(number).bit_length() * math.log10(2)) + 1


def _integer_reason(digits: int, limits: ValueLimits) -> str:
    return (
        f"the integer has {digits} digits; integers must fit in 64 bits "
        f"(at most {limits.max_integer}): send larger ones as strings"
    )


@dataclass(frozen=True)
class _Mark:
    """Left in the value, by the second parse, where the first one gave up."""

    refusal: type[ValueRefused]
    reason: str


def _locate(data: bytes | str, limits: ValueLimits) -> ValueRefused | None:
    """Parse ``data`` again with hooks that leave a ``_Mark`` instead of raising, and name
    the path of the first mark (document order); None if there is none."""

    def mark_duplicates(pairs: list[tuple[str, Any]]) -> Any:
        out = dict(pairs)
        return out if len(out) == len(pairs) else _Mark(InvalidJson, _duplicate_reason(pairs))

    def mark_long_integer(text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            return _Mark(ValueRefused, _integer_reason(len(text.lstrip("-")), limits))

    try:
        value = json.loads(
            data,
            object_pairs_hook=mark_duplicates,
            parse_constant=lambda name: _Mark(InvalidJson, _constant_reason(name)),
            parse_int=mark_long_integer,
        )
    except (ValueError, RecursionError):
        return None
    todo: list[tuple[Any, str]] = [(value, "")]
    while todo:
        item, path = todo.pop()
        if isinstance(item, _Mark):
            return item.refusal(path, item.reason)
        # Pushed last to first, so the first child is looked at first.
        if isinstance(item, dict):
            todo.extend((child, join_path(path, key)) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            todo.extend((item[i], join_path(path, i)) for i in range(len(item) - 1, -1, -1))
    return None


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


def _shown(key: str) -> str:
    """A key as a path shows it: quoted, escaped, and shortened if long."""
    # ASCII-escaped: a NUL or a lone surrogate in a key must not spoil the message itself.
    return json.dumps(key if len(key) <= 40 else key[:40] + "…")
