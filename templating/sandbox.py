"""The one Jinja2 environment every template and expression runs in.

It is ``ImmutableSandboxedEnvironment`` (no dunder or private attributes, no mutation of
lists and dicts, no unsafe callables) with ``StrictUndefined`` (a typo is an error, not an
empty string), tightened against resource exhaustion, which the stock sandbox leaves open:

- ``*`` and ``**`` are checked before they run, so ``'a' * 10**9`` or ``9 ** 9 ** 9`` is
  refused instead of eating memory and CPU;
- ``range`` is capped far below the sandbox's own 100,000;
- ``namespace`` is gone: mutable cells are the one way to grow a value across loop iterations.

Rendered output is capped separately (``templating.render``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, Undefined
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT_CHARS = 1024 * 1024
"""Largest rendered value (characters of a string, or of a native value's JSON)."""

MAX_RANGE = 10_000
MAX_POWER_BITS = 64 * 1024  # bits of an integer ``**`` may produce


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range of {len(r)} items is larger than {MAX_RANGE}")
    return r


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class AobSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_OUTPUT_CHARS:
                    raise SecurityError(
                        f"repeating a sequence of {size} items {times} times is too large"
                    )
            return operator.mul(left, right)
        # ``**``: an integer result's size is about bits(base) * exponent.
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > 0
            and abs(left).bit_length() * right > MAX_POWER_BITS
        ):
            raise SecurityError(f"{left} ** {right} is too large")
        return operator.pow(left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Workflow data is JSON: ``input.items`` must mean the key "items", not the dict
        # method, so keys win over attributes on mappings (Jinja's default is the reverse).
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def make_environment() -> AobSandbox:
    env = AobSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.pop("namespace", None)
    env.globals["range"] = _range
    return env


ENVIRONMENT = make_environment()

__all__ = ["ENVIRONMENT", "MAX_OUTPUT_CHARS", "AobSandbox", "SecurityError", "Undefined"]
