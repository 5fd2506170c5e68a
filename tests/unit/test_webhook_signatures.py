"""A webhook delivery's signature: the HMAC of "<timestamp>.<body>" under the hook's secret,
within the replay window, judged with a reason for each refusal."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from triggers.signatures import BadDelivery, check_signature, check_timestamp, sign

SECRET = "s3cret"
BODY = b'{"order": 42}'


def test_the_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", b'1700000000.{"order": 42}', hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == "sha256=" + expected


def test_a_good_signature_is_taken_and_given_back_as_lower_hex() -> None:
    header = sign(SECRET, 1700000000, BODY).upper().replace("SHA256=", "sha256=")
    assert check_signature(SECRET, 1700000000, header, BODY) == sign(SECRET, 1700000000, BODY)[7:]


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "reason"),
    [
        ("other", 1700000000, BODY, "does not match"),  # another hook's secret
        (SECRET, 1700000001, BODY, "does not match"),  # the timestamp changed after signing
        (SECRET, 1700000000, b'{"order": 43}', "does not match"),  # the body changed
    ],
)
def test_a_signature_of_anything_else_is_refused(
    secret: str, timestamp: int, body: bytes, reason: str
) -> None:
    # Signed with ``secret`` at 1700000000 over BODY; judged at ``timestamp`` over ``body``.
    header = sign(secret, 1700000000, BODY)
    with pytest.raises(BadDelivery, match=reason):
        check_signature(SECRET, timestamp, header, body)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no X-AOB-Signature"),
        ("md5=abc", "must be sha256="),
        ("sha256=abc", "64 hexadecimal"),
        ("sha256=" + "g" * 64, "64 hexadecimal"),
    ],
)
def test_a_malformed_signature_header_is_refused_with_its_reason(
    header: str | None, reason: str
) -> None:
    with pytest.raises(BadDelivery, match=reason):
        check_signature(SECRET, 1700000000, header, BODY)


def test_a_timestamp_inside_the_window_either_side_is_taken() -> None:
    assert check_timestamp("1700000000", now=1700000300, window_s=300) == 1700000000
    assert check_timestamp("1700000300", now=1700000000, window_s=300) == 1700000300


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no X-AOB-Timestamp"),
        ("", "whole seconds"),
        ("17e8", "whole seconds"),
        ("-5", "whole seconds"),
        ("1700000000.5", "whole seconds"),
        ("1699999699", "301 s old"),
        ("1700000301", "301 s far in the future"),
    ],
)
def test_a_timestamp_outside_the_window_or_malformed_is_refused(
    header: str | None, reason: str
) -> None:
    with pytest.raises(BadDelivery, match=reason):
        check_timestamp(header, now=1700000000, window_s=300)
