"""Rendering JSON values whose strings are templates, and evaluating condition expressions.

The context is ``{input, nodes: {<id>: {output, status}}}`` (API.md, Workflow format).
A string that is exactly one ``{{ expr }}`` yields the expression's native value, so that
``"{{ input.items }}"`` stays a list and ``"{{ input.n + 1 }}"`` a number; any other string
renders to a string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, nodes
from jinja2.environment import Template, TemplateExpression

from templating.errors import TemplateError
from templating.sandbox import ENVIRONMENT, MAX_OUTPUT_CHARS

_SINGLE_EXPRESSION = re.compile(r"\A\{\{-?(?P<expr>.*?)-?\}\}\Z", re.DOTALL)
MAX_DEPTH = 64  # nesting of rendered values; deeper JSON is refused, not recursed into


class _Budget:
    """Characters left for one ``render_value`` call: a template bomb stops at the cap."""

    def __init__(self, chars: int) -> None:
        self.left = chars

    def spend(self, chars: int, expression: str) -> None:
        self.left -= chars
        if self.left < 0:
            raise TemplateError(
                expression, f"rendered output exceeds {MAX_OUTPUT_CHARS} characters"
            )


# Templates are compiled once per distinct text: a workflow's config repeats across runs.
@lru_cache(maxsize=2048)
def _compile_template(source: str) -> Template:
    return ENVIRONMENT.from_string(source)


@lru_cache(maxsize=2048)
def _compile_expression(source: str) -> TemplateExpression:
    return ENVIRONMENT.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=2048)
def _single_expression(source: str) -> str | None:
    """The inner expression when ``source`` is exactly one ``{{ … }}``, else None."""
    match = _SINGLE_EXPRESSION.match(source)
    if match is None:
        return None
    # The regex alone would take "{{ a }} and {{ b }}" for one expression; the parse tree
    # tells the truth.
    try:
        body = ENVIRONMENT.parse(source).body
    except TemplateSyntaxError:
        return None
    single = len(body) == 1 and isinstance(body[0], nodes.Output) and len(body[0].nodes) == 1
    if single and not isinstance(body[0].nodes[0], nodes.TemplateData):
        return match.group("expr")
    return None


def _failure(source: str, exc: BaseException) -> TemplateError:
    cause = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return TemplateError(source, cause)


def _to_json(value: Any, source: str, depth: int = 0) -> Any:
    """The JSON value of an expression's result (tuples, ranges and generators become
    lists); anything with no JSON form is the template's error."""
    if depth > MAX_DEPTH:
        raise TemplateError(source, f"value nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # raises with Jinja's own message
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _to_json(v, source, depth + 1) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [_to_json(v, source, depth + 1) for v in value]
    raise TemplateError(source, f"the expression yields a {type(value).__name__}, not a JSON value")


def _render_string(source: str, context: Mapping[str, Any], budget: _Budget) -> Any:
    if "{" not in source:  # no template syntax: nothing to render (the common case)
        budget.spend(len(source), source)
        return source
    expr = _single_expression(source)
    try:
        if expr is not None:
            value = _to_json(_compile_expression(expr)(**context), source)
            budget.spend(
                len(json.dumps(value)) if not isinstance(value, str) else len(value), source
            )
            return value
        return _generate(source, context, budget)
    except TemplateError:
        raise
    except Exception as e:  # whatever a user's template raises is the template's error
        raise _failure(source, e) from e


def _generate(source: str, context: Mapping[str, Any], budget: _Budget) -> str:
    """The template's text, chunk by chunk, stopped as soon as it is over budget."""
    parts: list[str] = []
    for chunk in _compile_template(source).generate(**context):
        budget.spend(len(chunk), source)
        parts.append(chunk)
    return "".join(parts)


def _render(value: Any, context: Mapping[str, Any], budget: _Budget, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TemplateError("<value>", f"value nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return _render_string(value, context, budget)
    if isinstance(value, Mapping):
        return {k: _render(v, context, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v, context, budget, depth + 1) for v in value]
    return value


def render_value(value: Any, context: Mapping[str, Any], max_chars: int = MAX_OUTPUT_CHARS) -> Any:
    """``value`` with every string in it rendered over ``context`` (dicts and lists
    recursively; keys are left as they are). TemplateError on the first failure."""
    return _render(value, context, _Budget(max_chars), 0)


def render_string(
    source: str, context: Mapping[str, Any], max_chars: int = MAX_OUTPUT_CHARS
) -> str:
    """``source`` rendered to a string, even when it is one expression (e.g. a prompt).
    Text with no template syntax is returned as it is, as ``render_value`` does."""
    budget = _Budget(max_chars)
    if "{" not in source:
        budget.spend(len(source), source)
        return source
    try:
        return _generate(source, context, budget)
    except TemplateError:
        raise
    except Exception as e:
        raise _failure(source, e) from e


def evaluate_json(expr: str, context: Mapping[str, Any]) -> Any:
    """The JSON value of ``evaluate(expr, context)``: tuples, ranges and generators become
    lists (so an empty ``select`` is false, as a condition expects), anything with no JSON
    form is the expression's error. A value that must leave the process takes this form."""
    value = evaluate(expr, context)
    try:
        return _to_json(value, expr)
    except TemplateError:
        raise
    except Exception as e:  # a generator runs the template's code as it is consumed
        raise _failure(expr, e) from e


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """The value of a bare expression such as ``nodes.fetch.output.body | length > 10``."""
    try:
        value = _compile_expression(expr)(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value
    except Exception as e:
        raise _failure(expr, e) from e
