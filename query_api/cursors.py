"""Opaque pagination cursors: base64 of a small JSON key, so clients cannot depend on it."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from query_api.errors import BadCursor


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key inside ``cursor``; BadCursor unless it is a list of ``arity`` scalars."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, UnicodeError) as e:
        raise BadCursor(f"cursor {cursor!r} is not one this API issued") from e
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(isinstance(k, str | int) and not isinstance(k, bool) for k in key)
    ):
        raise BadCursor(f"cursor {cursor!r} is not one this API issued")
    return key
