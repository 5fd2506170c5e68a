"""Which secrets a node's config reads: ``{{ secrets.NAME }}`` (or ``secrets['NAME']``).

Part of the wire contract because two parties must agree on it: publishing refuses a config
that reads secrets in any other way, and the worker fetches exactly the secrets named here,
no others, before it renders the config. A reference must name its secret in the template
text itself: a name computed at run time (``secrets[input.which]``) would let whoever
submits a run choose which of the tenant's secrets a node sends where, so it is refused.

References are found on Jinja's parse tree, not by searching the text: ``secrets`` in plain
prose ("keep secrets safe") is no reference, and a reference spelt with spaces or brackets
still is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # noqa: S105 - a pattern, not a password
MAX_SECRET_VALUE_BYTES = 64 * 1024
"""The largest secret value (UTF-8 bytes): a token or a key, not a document."""

SECRETS_VARIABLE = "secrets"
_NAME = re.compile(SECRET_NAME_PATTERN)
# Parsing needs an environment but no sandbox: nothing is rendered here.
_PARSER = Environment(autoescape=False)  # noqa: S701 - parse only, never rendered


class SecretReferenceError(ValueError):
    """A template reads ``secrets`` other than as ``secrets.NAME`` with a valid name."""


def is_secret_name(name: str) -> bool:
    return bool(_NAME.match(name))


def secret_references(value: Any) -> frozenset[str]:
    """The secret names read by the templates in ``value`` (every string of it, at any
    depth). SecretReferenceError for a reference that is not ``secrets.NAME``.

    A string that is not a valid template names no secret: rendering it fails on its own.
    """
    names: set[str] = set()
    for text in _template_strings(value):
        names.update(_references(text))
    return frozenset(names)


def _template_strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if SECRETS_VARIABLE in item and "{" in item:
                yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


@lru_cache(maxsize=2048)
def _references(text: str) -> frozenset[str]:
    try:
        tree = _PARSER.parse(text)
    except TemplateSyntaxError:
        return frozenset()
    named: set[str] = set()
    used: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: str | None
        if isinstance(node, nodes.Getattr):
            inner, name = node.node, node.attr
        elif isinstance(node, nodes.Getitem):
            inner, name = node.node, _constant(node.arg)
        else:  # pragma: no cover - find_all yields only the two kinds asked for
            continue
        if not (isinstance(inner, nodes.Name) and inner.name == SECRETS_VARIABLE):
            continue
        if name is None:
            raise SecretReferenceError(
                f"{text!r}: a secret must be named in the template (secrets.NAME), not computed"
            )
        if not is_secret_name(name):
            raise SecretReferenceError(
                f"{text!r}: {name!r} is not a secret name (letters, digits and '_', "
                "not starting with a digit, at most 64)"
            )
        named.add(name)
        used.add(id(inner))
    for name_node in tree.find_all(nodes.Name):
        loaded = name_node.name == SECRETS_VARIABLE and name_node.ctx == "load"
        if loaded and id(name_node) not in used:
            raise SecretReferenceError(
                f"{text!r}: 'secrets' may only be read as secrets.NAME, one secret at a time"
            )
    return frozenset(named)


def _constant(arg: nodes.Expr) -> str | None:
    if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
        return arg.value
    return None
