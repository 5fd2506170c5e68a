"""What a GraphQL query costs (query_api/cost.py): the attacks the issue names are refused with
their cost and the limit, and every query AOB itself sends stays well under it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from graphql import (
    GraphQLSyntaxError,
    OperationDefinitionNode,
    get_named_type,
    is_list_type,
    is_non_null_type,
    parse,
    validate,
)

from cli.api_client import RUN_QUERY
from cli.history import RUN_CREATED
from query_api.cost import LIST_SIZES, WEIGHTS, query_cost
from query_api.pagination import MAX_PAGE
from query_api.schema import build_schema, schema
from query_api.settings import QueryApiSettings

ROOT = Path(__file__).resolve().parents[2]
LIMIT = QueryApiSettings.model_construct().max_query_cost
MARGIN = 4  # AOB's own queries use at most a quarter of the limit

EVENTS = "events(first: 500) { edges { node { seq type payload } } }"
ALIAS_BOMB = (
    "{ "
    + " ".join(
        f"a{i}: runs(first: 500) {{ edges {{ node {{ versions {{ definition }} {EVENTS} }} }} }}"
        for i in range(30)
    )
    + " }"
)
DEEP_FORKS = '{ run(id: "r") { forks { forks { forks { forks { forks { id } } } } } } }'
OUTPUTS = "{ runs(first: 500) { edges { node { nodes { output } } } } }"


def cost(query: str, variables: dict[str, Any] | None = None) -> int:
    return query_cost(schema._schema, parse(query), None, variables)


def _context() -> SimpleNamespace:
    # A refused query never reaches a resolver: pool=None would fail loudly if it did.
    return SimpleNamespace(pool=None, tenant="t", nodes=None, watcher=None, settings=None)


# --- the model ---------------------------------------------------------------------------


def test_nested_pages_multiply() -> None:
    one_run = cost(
        "{ runs(first: 1) { edges { node { events(first: 1) { edges { cursor } } } } } }"
    )
    many = cost(
        "{ runs(first: 500) { edges { node { events(first: 500) { edges { cursor } } } } } }"
    )
    # runs (10) + edges (1) + 500 * (node 1 + events 1 + 1 + edges 1 + 500 * (1 edge))
    assert many == 10 + 1 + 500 * (1 + 1 + 1 + 1 + 500 * 1)
    assert many > 250_000 > one_run


def test_a_scalar_is_free_and_a_cas_read_is_not() -> None:
    assert cost('{ run(id: "r") { id status } }') == 11
    assert cost('{ run(id: "r") { nodes(first: 1) { id } } }') == 11 + 1 + 1
    assert cost('{ run(id: "r") { nodes(first: 1) { output } } }') == 11 + 1 + 1 + 10


def test_defaults_count_when_first_is_not_sent() -> None:
    # runs (10) + the connection (1) + 20 edges, each an edge and a run (runs' default: 20)
    assert cost("{ runs { edges { node { id } } } }") == 10 + 1 + 20 * 2
    assert cost('{ run(id: "r") { nodes { id } } }') == 11 + 1 + 500  # a run's 500 nodes


def test_variables_are_resolved_and_a_missing_one_is_the_cap() -> None:
    query = "query($n: Int!) { runs(first: $n) { edges { node { nodes { output } } } } }"
    assert cost(query, {"n": 1}) < LIMIT
    assert cost(query, {"n": 500}) > LIMIT
    assert cost(query, {}) == cost(query, {"n": MAX_PAGE})
    with_default = "query($n: Int = 2) { runs(first: $n) { edges { node { id } } } }"
    assert cost(with_default, {}) == 10 + 1 + 2 * 2


def test_named_and_inline_fragments_count_as_if_written_in_place() -> None:
    inline = "{ runs(first: 500) { edges { node { nodes { output } } } } }"
    named = """
        { runs(first: 500) { ...Page } }
        fragment Page on RunConnection { edges { node { ...Outputs } } }
        fragment Outputs on Run { nodes { ... on NodeExecution { output } } }
    """
    assert cost(named) == cost(inline)


def test_a_fragment_spread_twice_counts_twice() -> None:
    fragment = " fragment P on RunConnection { edges { cursor } }"
    once = "{ a: runs(first: 500) { ...P } }" + fragment
    twice = "{ a: runs(first: 500) { ...P } b: runs(first: 500) { ...P } }" + fragment
    assert cost(twice) == 2 * cost(once) > 1_000


def test_a_fragment_cycle_does_not_loop() -> None:
    cyclic = """
        { run(id: "r") { ...A } }
        fragment A on Run { forks { ...B } }
        fragment B on Run { forks { ...A } }
    """
    assert cost(cyclic) > 0  # finite; validation refuses the document anyway


def test_every_weighted_field_is_in_the_schema() -> None:
    # A renamed field must not silently lose its weight.
    for key in [*WEIGHTS, *LIST_SIZES]:
        type_name, field_name = key.split(".")
        kind = schema._schema.get_type(type_name)
        assert kind is not None, key
        assert field_name in kind.fields, key  # type: ignore[attr-defined]


def test_every_list_of_objects_is_paginated_or_bounded() -> None:
    """A list of objects takes ``first`` (or is a connection's ``edges``, or has a known
    bound): nothing is returned whole."""
    unbounded = []
    for type_name, kind in schema._schema.type_map.items():
        if type_name.startswith("__") or not hasattr(kind, "fields"):
            continue
        for field_name, field in kind.fields.items():
            type_ = field.type.of_type if is_non_null_type(field.type) else field.type
            if not is_list_type(type_) or not hasattr(get_named_type(type_), "fields"):
                continue
            key = f"{type_name}.{field_name}"
            if "first" not in field.args and field_name != "edges" and key not in LIST_SIZES:
                unbounded.append(key)
    assert unbounded == []


# --- refused, with the cost and the limit -------------------------------------------------


@pytest.mark.parametrize("query", [ALIAS_BOMB, DEEP_FORKS, OUTPUTS])
async def test_the_issues_attacks_are_refused_with_their_cost(query: str) -> None:
    expected = cost(query)
    assert expected > LIMIT
    result = await schema.execute(query, context_value=_context())
    assert result.data is None
    assert result.errors and len(result.errors) == 1
    error = result.errors[0]
    assert error.message.startswith(f"query cost {expected:,} exceeds the limit of {LIMIT:,}")
    assert error.extensions == {"code": "QUERY_TOO_COSTLY", "cost": expected, "limit": LIMIT}


async def test_the_alias_bomb_through_fragments_is_refused_too() -> None:
    aliases = " ".join(f"a{i}: runs(first: 500) {{ ...Page }}" for i in range(30))
    query = f"""
        {{ {aliases} }}
        fragment Page on RunConnection {{ edges {{ node {{ ...R }} }} }}
        fragment R on Run {{ ... on Run {{ versions {{ definition }} {EVENTS} }} }}
    """
    result = await schema.execute(query, context_value=_context())
    assert result.errors
    assert result.errors[0].extensions == {
        "code": "QUERY_TOO_COSTLY",
        "cost": cost(ALIAS_BOMB),
        "limit": LIMIT,
    }


async def test_a_variable_page_size_is_judged_per_request() -> None:
    query = "query($n: Int!) { runs(first: $n) { edges { node { nodes { output } } } } }"
    big = await schema.execute(query, variable_values={"n": 500}, context_value=_context())
    assert big.errors and big.errors[0].message.startswith("query cost")
    # The same text with a small page is not refused for its cost (it reaches the resolver,
    # which fails on the missing pool: a masked error, not a cost).
    small = await schema.execute(query, variable_values={"n": 1}, context_value=_context())
    assert small.errors and small.errors[0].message == "Unexpected error."


async def test_the_limit_is_a_setting() -> None:
    strict = build_schema(QueryApiSettings.model_construct(max_query_cost=10))
    result = await strict.execute('{ run(id: "r") { id } }', context_value=_context())
    assert result.errors
    assert result.errors[0].message.startswith("query cost 11 exceeds the limit of 10")


async def test_introspection_can_be_turned_off() -> None:
    query = "{ __schema { queryType { name } } }"
    on = await schema.execute(query, context_value=_context())
    assert on.errors is None
    off = build_schema(QueryApiSettings.model_construct(introspection=False))
    result = await off.execute(query, context_value=_context())
    assert result.errors
    assert "introspection" in result.errors[0].message.lower()


# --- AOB's own queries ----------------------------------------------------------------------


def _operations_in(path: Path) -> list[tuple[str, str]]:
    """Every string constant of a Python file that is a GraphQL operation of this schema."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        try:
            document = parse(node.value)
        except GraphQLSyntaxError:
            continue
        operational = any(isinstance(d, OperationDefinitionNode) for d in document.definitions)
        if operational and not validate(schema._schema, document):
            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


def _readme_queries() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # curl's JSON bodies ('{"query": "…"}') and the Python example's ``query = "…"``.
    bodies = [json.loads(b)["query"] for b in re.findall(r"-d '(\{\"query\".*?\})'", text)]
    python = re.findall(r'^\s*query = "(.*)"$', text, flags=re.MULTILINE)
    return [(f"README.md #{i}", q) for i, q in enumerate([*bodies, *python])]


def _console_operations() -> list[tuple[str, str]]:
    """The console's GraphQL operations: template literals in its TypeScript sources, with
    the ``${NAME}`` of a constant of the same file put in place."""
    found = []
    for path in sorted((ROOT / "console" / "src").glob("*.ts*")):
        text = path.read_text(encoding="utf-8")
        constants = dict(re.findall(r"const (\w+) = `([^`]*)`", text))
        for literal in re.findall(r"`([^`]*)`", text):
            body = re.sub(r"\$\{(\w+)\}", lambda m, c=constants: c.get(m[1], m[0]), literal)
            try:
                document = parse(body)
            except GraphQLSyntaxError:
                continue
            if any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
                assert not validate(schema._schema, document), (path.name, body)
                found.append((f"{path.relative_to(ROOT)}", body))
    return found


# Tests whose queries are costly on purpose: they show the limit refusing them.
COSTLY_ON_PURPOSE = {ROOT / "tests/connected/query_api/test_query_cost_live.py"}


def own_queries() -> list[tuple[str, str]]:
    files = [*sorted(ROOT.glob("cli/**/*.py")), *sorted(ROOT.glob("tests/connected/**/*.py"))]
    files = [f for f in files if f not in COSTLY_ON_PURPOSE]
    return (
        [q for path in files for q in _operations_in(path)]
        + _readme_queries()
        + _console_operations()
    )


def test_the_clients_queries_are_found() -> None:
    texts = {q for _, q in own_queries()}
    assert RUN_QUERY in texts  # aob runs show / wait, aob demo
    assert RUN_CREATED in texts  # aob runs show --at
    readme = [name for name, _ in own_queries() if name.startswith("README")]
    assert len(readme) >= 2  # the curl query and the subscription
    console = [q for name, q in own_queries() if name.startswith("console")]
    assert any(q.startswith("subscription Live") for q in console)  # a run page, live
    assert all(f.exists() for f in COSTLY_ON_PURPOSE)  # the exclusion names a real file


@pytest.mark.parametrize(("where", "query"), own_queries(), ids=lambda v: str(v)[:60])
def test_aobs_own_queries_stay_well_under_the_limit(where: str, query: str) -> None:
    # Variables unknown here count as the page cap: the worst case of each text.
    assert cost(query) * MARGIN <= LIMIT, where


async def test_the_cli_run_query_passes_the_limiter() -> None:
    result = await schema.execute(
        RUN_QUERY, variable_values={"id": "r", "after": None}, context_value=_context()
    )
    assert result.errors
    assert not result.errors[0].message.startswith("query cost")  # reached the resolver
