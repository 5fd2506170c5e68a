"""Templates and expressions in the sandbox: native values, errors, escapes refused, bombs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from templating import MAX_OUTPUT_CHARS, TemplateError, evaluate, render_string, render_value

CTX = {
    "input": {"items": [1, 2, 3], "n": 2, "name": "Ada", "flag": False},
    "nodes": {
        "fetch": {"output": {"body": list(range(12)), "status": 200}, "status": "SUCCEEDED"},
        "skipped": {"output": None, "status": "SKIPPED"},
    },
}


def test_single_expression_keeps_its_native_type() -> None:
    assert render_value("{{ input.items }}", CTX) == [1, 2, 3]
    assert render_value("{{ input.n + 1 }}", CTX) == 3
    assert render_value("{{input.flag}}", CTX) is False
    assert render_value("{{ nodes.fetch.output }}", CTX) == CTX["nodes"]["fetch"]["output"]
    assert render_value("{{ nodes.skipped.output }}", CTX) is None


def test_mixed_strings_render_to_strings() -> None:
    assert render_value("Hello {{ input.name }}!", CTX) == "Hello Ada!"
    assert render_value("{{ input.n }}{{ input.n }}", CTX) == "22"
    assert render_value("{{ input.n }} and {{ input.name }}", CTX) == "2 and Ada"
    assert render_value(" {{ input.n }}", CTX) == " 2"


def test_renders_json_values_recursively() -> None:
    value = {"a": ["{{ input.n }}", {"b": "x{{ input.name }}"}], "c": 5, "d": None, "e": True}
    assert render_value(value, CTX) == {"a": [2, {"b": "xAda"}], "c": 5, "d": None, "e": True}


def test_keys_win_over_dict_methods() -> None:
    # Without this, ``input.items`` would be the bound method dict.items.
    assert render_value("{{ input.items | length }}", CTX) == 3


def test_filters_and_generators_become_json() -> None:
    assert render_value("{{ input.items | map('string') | list }}", CTX) == ["1", "2", "3"]
    assert render_value("{{ input.items | map('string') }}", CTX) == ["1", "2", "3"]
    assert render_value("{{ range(3) }}", CTX) == [0, 1, 2]


def test_evaluate_conditions() -> None:
    assert evaluate("nodes.fetch.output.body | length > 10", CTX) is True
    assert evaluate("input.n == 3", CTX) is False
    assert evaluate("'Ada' in input.name", CTX) is True


@pytest.mark.parametrize(
    ("template", "cause"),
    [
        ("{{ input.missing }}", "'dict object' has no attribute 'missing'"),
        ("x {{ input.missing }}", "'dict object' has no attribute 'missing'"),
        ("{{ nodes.nope.output }}", "'dict object' has no attribute 'nope'"),
        ("{{ input.n", "unexpected end of template"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_errors_carry_expression_and_cause(template: str, cause: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_value({"k": [template]}, CTX)
    assert info.value.expression == template
    assert cause in info.value.cause
    assert cause in str(info.value)


def test_evaluate_undefined_is_an_error() -> None:
    with pytest.raises(TemplateError, match="has no attribute 'x'"):
        evaluate("input.x", CTX)


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ input.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ input.items.append(4) }}",
        "{{ input.update({'a': 1}) }}",
        "{{ ''.format.__globals__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{{ config }}",
        "{{ request }}",
        "{% set ns = namespace(x=1) %}{{ ns.x }}",
    ],
)
def test_sandbox_escapes_are_refused(escape: str) -> None:
    with pytest.raises(TemplateError):
        render_value(escape, CTX)
    assert CTX["input"]["items"] == [1, 2, 3]


@pytest.mark.parametrize(
    "bomb",
    [
        "{{ 'a' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 2 ** 100000000 }}",
        "{{ range(10**7) | list }}",
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{{ 'x' * 600000 }}{{ 'x' * 600000 }}",
    ],
)
def test_template_bombs_are_stopped(bomb: str) -> None:
    with pytest.raises(TemplateError):
        render_value(bomb, CTX)


def test_output_cap_counts_the_whole_value() -> None:
    chunk = "{{ 'x' * 400000 }}"
    assert len(render_value([chunk, chunk], CTX)[0]) == 400_000
    with pytest.raises(TemplateError, match="exceeds"):
        render_value([chunk, chunk, chunk], CTX)
    assert MAX_OUTPUT_CHARS == 1024 * 1024


def test_render_string_always_gives_a_string() -> None:
    assert render_string("{{ input.items }}", CTX) == "[1, 2, 3]"


@given(st.text().filter(lambda s: "{" not in s))
def test_plain_strings_pass_through(text: str) -> None:
    assert render_value(text, CTX) == text


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet="abc "),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    )
)
def test_json_without_templates_is_unchanged(value: object) -> None:
    assert render_value(value, CTX) == value
