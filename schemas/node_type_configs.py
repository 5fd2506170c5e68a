"""A node's config judged by its registered type's JSON Schema (``node_types``).

A config is checked when it is published and when a patch brings it, so that a node whose
config its worker cannot take is refused with the schema's own words, not failed at run time.
What is rendered only at run time cannot be judged before: a string holding a template
(``"{{ input.n }}"``) stands in for a value of any type, so the schema's complaints about such
a string are left to the worker, which checks the rendered config again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

# Reasons from one node's config: a schema may find many faults in one value.
MAX_REASONS_PER_NODE = 10
TEMPLATE_MARK = "{{"
# A schema that cannot be applied: a $ref to a document outside it (never fetched: a schema
# is a tenant's input, and fetching would be a request to wherever it points), to a place
# in it that does not exist, or to itself with nothing in between (endless).
UNUSABLE = (Unresolvable, RecursionError)
# Values a schema is tried on when registered, so that a root that cannot be applied is
# refused then, not at the first publish.
PROBES: tuple[Any, ...] = ({}, [], None, "", 0)


def schema_reasons(schema: Any) -> list[str]:
    """Why ``schema`` is not a JSON Schema (draft 2020-12) a config can be checked by."""
    if not isinstance(schema, dict):
        return [f"a schema must be a JSON object, not {type(schema).__name__}"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        return [f"not a valid JSON Schema: {e.message} (at {_where(e.absolute_path)})"]
    validator = Draft202012Validator(schema)
    try:
        for probe in PROBES:
            for _ in validator.iter_errors(probe):
                pass
    except UNUSABLE as e:
        return [_unusable(e)]
    return []


def config_reasons(node_id: str, type_name: str, config: Any, schema: dict[str, Any]) -> list[str]:
    """The ways ``config`` breaks ``schema``, each naming the node, its type and where."""
    if not schema:
        return []
    reasons = []
    try:
        for error in _errors(Draft202012Validator(schema), config):
            if _templated(error.instance):
                continue
            where = _path(error.absolute_path)
            reasons.append(f"node {node_id!r} ({type_name}): config{where}: {error.message}")
            if len(reasons) == MAX_REASONS_PER_NODE:
                break
    except UNUSABLE as e:  # registered before schemas were tried, or reached by this config
        return [f"node {node_id!r} ({type_name}): the type's config schema {_unusable(e)}"]
    return reasons


def _errors(validator: Draft202012Validator, config: Any) -> Iterator[ValidationError]:
    # Best first within each place, places in document order: stable, so the same config is
    # told the same reasons every time.
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.path])
    for error in errors:
        # "anyOf"/"oneOf" report the alternatives' faults as context; a templated string
        # that one alternative would take must not fail the node.
        if error.context and any(_templated(sub.instance) for sub in error.context):
            continue
        yield error


def _unusable(e: Exception) -> str:
    if isinstance(e, RecursionError):
        return "cannot be applied: a $ref leads back to itself with nothing in between"
    return f"cannot be applied: {e} (only references within the schema are followed)"


def _templated(value: Any) -> bool:
    return isinstance(value, str) and TEMPLATE_MARK in value


def _path(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _where(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path)
