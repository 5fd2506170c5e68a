"""The rules every value that enters obeys (``schemas.values``): each refusal names its path."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.values import (
    MAX_DEPTH,
    ValueLimits,
    ValueRefused,
    check_value,
    loads_strict,
    writable,
)


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        ({"items": [{"name": "a"}, {"name": "b\x00"}]}, "input.items[1].name", "NUL"),
        ({"a": "\ud800"}, "input.a", "lone surrogate"),
        ({"k\x00": 1}, "input", "NUL"),
        ({"n": float("inf")}, "input.n", "finite"),
        ({"n": float("nan")}, "input.n", "finite"),
        ({"n": 10**400}, "input.n", "401 digits"),
        ({"n": -(2**63)}, "input.n", "64 bits"),
        ({"odd key": [1, {2}]}, 'input["odd key"][1]', "not a JSON value"),
    ],
)
def test_a_bad_value_is_refused_at_its_path(value: object, path: str, words: str) -> None:
    with pytest.raises(ValueRefused) as refused:
        check_value(value, "input")
    assert refused.value.path == path
    assert words in refused.value.reason


def test_nesting_is_limited_without_recursing() -> None:
    check_value(_nested(MAX_DEPTH), "input")
    with pytest.raises(ValueRefused, match="nests deeper than 64"):
        check_value(_nested(MAX_DEPTH + 1), "input")
    # Far past the interpreter's recursion limit: refused, not a RecursionError.
    with pytest.raises(ValueRefused):
        check_value(_nested(100_000), "input")


def test_sizes_of_strings_and_keys_are_limited() -> None:
    limits = ValueLimits(max_string_chars=10, max_key_chars=3)
    check_value({"abc": "x" * 10}, "v", limits)
    with pytest.raises(ValueRefused, match="11 characters; the limit is 10"):
        check_value({"abc": "x" * 11}, "v", limits)
    with pytest.raises(ValueRefused, match="key of 4 characters"):
        check_value({"abcd": 1}, "v", limits)


def test_the_largest_integers_pass() -> None:
    check_value([2**63 - 1, -(2**63 - 1), 1.7e308, True, None], "v")


def test_strict_parsing_refuses_what_json_loads_lets_through() -> None:
    with pytest.raises(ValueRefused, match='key "a" appears twice'):
        loads_strict(b'{"x": {"a": 1, "a": 2}}')
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueRefused, match="finite"):
            loads_strict(b'{"n": ' + constant + b"}")
    with pytest.raises(ValueRefused, match="finite"):
        loads_strict(b'{"n": 1e400}')
    with pytest.raises(ValueRefused, match="lone surrogate"):
        loads_strict(b'{"s": "\\ud800"}')
    with pytest.raises(ValueRefused):
        loads_strict(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(json.JSONDecodeError):
        loads_strict(b"{not json")
    # A surrogate PAIR is one character, and fine.
    assert loads_strict(b'{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63) + 1, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
            children,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@given(json_values)
def test_every_storable_value_passes_and_round_trips(value: object) -> None:
    check_value(value, "v")
    text = json.dumps(value, ensure_ascii=False).encode()
    assert loads_strict(text) == json.loads(text)


def test_writable_replaces_what_no_string_may_hold_and_keeps_the_rest() -> None:
    text = writable("a\x00b\ud800c\udfffd 😀 \t")
    assert text == "a\ufffdb\ufffdc\ufffdd 😀 \t"
    check_value(text, "reason")
