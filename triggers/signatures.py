"""A webhook delivery's signature: ``X-AOB-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<X-AOB-Timestamp>.<raw body>"`` under the hook's secret.

The timestamp is signed with the body, so a captured delivery cannot be sent again later
with a new timestamp; it must be within ``window_s`` of our clock (either side: a sender's
clock may run ahead), and a signature is taken once within that window (``triggers.hooks``
remembers the used ones for as long), so a captured delivery cannot be sent again inside it
either. The comparison is in constant time (``hmac.compare_digest``).

Every refusal says why (``BadDelivery.reason``), never what the right signature would be.
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "sha256="
DEFAULT_WINDOW_S = 300
_HEX = frozenset("0123456789abcdef")


class BadDelivery(Exception):
    """A delivery that is not taken: a 401 whose detail is ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-AOB-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return SCHEME + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_timestamp(header: str | None, now: float, window_s: int = DEFAULT_WINDOW_S) -> int:
    """The delivery's timestamp, if the header holds one within ``window_s`` of ``now``."""
    if header is None:
        raise BadDelivery("no X-AOB-Timestamp header: send the unix time (seconds) you signed")
    text = header.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise BadDelivery("X-AOB-Timestamp must be the unix time in whole seconds")
    timestamp = int(text)
    skew = now - timestamp
    if abs(skew) > window_s:
        side = "old" if skew > 0 else "far in the future"
        raise BadDelivery(
            f"X-AOB-Timestamp is {abs(skew):.0f} s {side}: a delivery is taken within "
            f"{window_s} s of the receiver's clock (send it again, signed with the current time)"
        )
    return timestamp


def check_signature(secret: str, timestamp: int, header: str | None, body: bytes) -> str:
    """The delivery's signature (lower-case hex), if it is the HMAC of this timestamp and
    body under ``secret``."""
    if header is None:
        raise BadDelivery("no X-AOB-Signature header: send sha256=<hex HMAC-SHA256>")
    text = header.strip().lower()
    if not text.startswith(SCHEME):
        raise BadDelivery("X-AOB-Signature must be sha256=<hex HMAC-SHA256>")
    given = text[len(SCHEME) :]
    if len(given) != 64 or not set(given) <= _HEX:
        raise BadDelivery("X-AOB-Signature must be sha256= and 64 hexadecimal digits")
    expected = sign(secret, timestamp, body)[len(SCHEME) :]
    if not hmac.compare_digest(given, expected):
        raise BadDelivery(
            'the signature does not match: sign "<X-AOB-Timestamp>.<raw body>" with the '
            "hook's secret (HMAC-SHA256, hex)"
        )
    return given
