"""The rules every value that enters obeys (``schemas.values``): each refusal names its path."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.values import (
    MAX_DEPTH,
    InvalidJson,
    ValueLimits,
    ValueRefused,
    _refuse_first,
    check_value,
    join_path,
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


def test_an_integer_past_pythons_text_limit_is_refused_not_crashed_on() -> None:
    # str() of an int over 4,300 digits raises ValueError: the message must not need it.
    with pytest.raises(ValueRefused, match="integers must fit in 64 bits") as refused:
        check_value({"n": 10**5000}, "output")
    assert refused.value.path == "output.n"


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
    with pytest.raises(UnicodeDecodeError):
        loads_strict(b'{"s": "\xff"}')
    # A surrogate PAIR is one character, and fine.
    assert loads_strict(b'{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}


@pytest.mark.parametrize(
    ("text", "kind", "path", "words"),
    [
        (b'{"x": {"a": 1, "a": 2}}', InvalidJson, "x", 'key "a" appears twice'),
        (b'{"a": 1, "a": 1}', InvalidJson, "", 'key "a" appears twice'),
        (b'{"q": [{"a": 1}, {"b": 1, "b": 2}]}', InvalidJson, "q[1]", 'key "b"'),
        (b'{"a": [1, {"n": NaN}]}', InvalidJson, "a[1].n", "NaN is not a JSON number"),
        (b'{"m": -Infinity}', InvalidJson, "m", "-Infinity"),
        (b'{"i": [0, ' + b"9" * 5000 + b"]}", ValueRefused, "i[1]", "5000 digits"),
        (b'{"i": 1e400}', ValueRefused, "i", "finite"),
        # Raw bytes of a surrogate (not UTF-8): json reads them as that surrogate.
        (b'{"s": ["ok", "\xed\xa0\x80"]}', ValueRefused, "s[1]", "lone surrogate"),
    ],
)
def test_strict_parsing_names_the_path_of_what_it_refuses(
    text: bytes, kind: type[ValueRefused], path: str, words: str
) -> None:
    with pytest.raises(ValueRefused) as refused:
        loads_strict(text)
    assert type(refused.value) is kind
    assert (refused.value.path, words in refused.value.reason) == (path, True)


def test_paths_quote_names_that_are_not_identifiers() -> None:
    assert join_path("", "input") == "input"
    assert join_path("input", "items") == "input.items"
    assert join_path("input.items", 3) == "input.items[3]"
    assert join_path("input", "a b") == 'input["a b"]'
    assert join_path("input", "\x00") == 'input["\\u0000"]'


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


# Values near every limit, good and bad, for the fast first pass of check_value.
tight = ValueLimits(max_depth=2, max_string_chars=4, max_key_chars=2, max_integer=100)
edgy_text = st.text(st.sampled_from("ab\x00\ud800\U0001f600é"), max_size=5)
plain_text = st.text(st.sampled_from("ab"), max_size=5)
edgy_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-102, 102)
    | st.floats()
    | plain_text
    | edgy_text
    | st.sampled_from([(), (1,), {1}, b"x"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(plain_text | edgy_text | st.just(1), children, max_size=3)
    ),
    max_leaves=12,
)


def _verdict(check: Callable[[object, str, ValueLimits], None], value: object) -> object:
    try:
        check(value, "v", tight)
    except ValueRefused as e:
        return (e.path, e.reason)
    return "passed"


@settings(max_examples=500)
@given(edgy_values)
def test_the_fast_pass_never_lets_through_what_the_walk_refuses(value: object) -> None:
    assert _verdict(check_value, value) == _verdict(_refuse_first, value)


def test_writable_replaces_what_no_string_may_hold_and_keeps_the_rest() -> None:
    text = writable("a\x00b\ud800c\udfffd 😀 \t")
    assert text == "a\ufffdb\ufffdc\ufffdd 😀 \t"
    check_value(text, "reason")
