"""schemas.codec.json_value reads what the json module reads, as the json module reads it:
pydantic's parser where it can, the json module where it cannot."""

from __future__ import annotations

import json

import pytest

from schemas.codec import decode_event, json_value
from schemas.errors import PoisonRecord

DEEP = b"[" * 500 + b"]" * 500  # deeper than pydantic's parser goes


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "b": [true, null, 0.1, -0.0, 1E2, 123456789012345678901234567890]}',
        b'{"a": NaN, "b": Infinity}',
        b'{"a": 1, "a": 2}',
        b'{"lone": "\\ud800"}',
        b'\xef\xbb\xbf{"bom": 1}',
        DEEP,
    ],
    ids=["plain", "nan", "duplicate-key", "lone-surrogate", "bom", "deep"],
)
def test_it_reads_what_the_json_module_reads(data: bytes) -> None:
    assert repr(json_value(data)) == repr(json.loads(data))


@pytest.mark.parametrize(
    "data",
    [b'{"a": "x\ny"}', b'{"a": 1} trailing', b'{"a": \xff}', b"[" * 5000 + b"]" * 5000],
    ids=["control-character", "trailing", "not-utf8", "too-deep-for-either"],
)
def test_what_neither_reads_is_a_poison_record(data: bytes) -> None:
    with pytest.raises(PoisonRecord):
        decode_event(data)
