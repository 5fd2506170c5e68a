"""What a query costs, judged before it runs, so that one request cannot ask for millions of
rows or thousands of CAS blobs (issue: thirty aliases of ``runs(first: 500) { events(first:
500) … }`` passed every other limit).

The cost of a field is what resolving it once costs (``WEIGHTS``: a database query, a CAS
read, a large JSON value; 0 for a scalar), plus, for each item it returns, 1 if the item is an
object, plus what the item's own selection costs. A list's item count is its ``first``
argument (as sent, from the request's variables, or the argument's default), the page size
of the connection it is the ``edges`` of, or the list's known bound. Nested lists therefore
multiply: ``runs(first: 500) { edges { node { events(first: 500) … } } }`` is 250,000 events.

Fragments, named and inline, count as if written in place (each name is costed once per
page size); a fragment cycle, which validation refuses anyway, counts once and cannot loop.
A variable that is missing counts as the page cap. Introspection (``__schema``, ``__type``,
``__typename``) costs nothing: its size is the schema's, not the data's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_composite_type,
)
from strawberry.extensions import SchemaExtension

from query_api.pagination import MAX_PAGE
from query_api.registered_types import LISTED_NODE_TYPES

DATABASE = 10  # a query of its own, once per parent
CAS = 10  # a read from the content store (an output of up to 10 MiB)
LARGE_JSON = 2  # a JSON value kept in a row (a definition, a payload): bounded, not small
BATCHED = 1  # read for every parent of the request in one query (loaders.py)

WEIGHTS: Mapping[str, int] = {
    "Query.workflow": DATABASE,
    "Query.workflows": DATABASE,
    "Query.run": DATABASE,
    "Query.runs": DATABASE,
    "Query.pendingApprovals": DATABASE,
    "Query.nodeTypes": DATABASE,
    "Subscription.runUpdated": DATABASE,
    "Subscription.runEvents": DATABASE,
    "Workflow.versions": DATABASE,
    "WorkflowVersion.definition": LARGE_JSON,
    "Run.input": LARGE_JSON,
    "Run.output": LARGE_JSON,
    "Run.nodes": BATCHED,
    "Run.patches": BATCHED,
    "Run.versions": BATCHED,
    "Run.approvals": BATCHED,
    "Run.usage": BATCHED,
    "Run.spend": BATCHED,
    "Run.events": BATCHED,
    "Run.mapItems": BATCHED,
    "Run.forkedFrom": DATABASE,
    "Run.forks": DATABASE,
    "Run.parent": DATABASE,
    "Run.children": DATABASE,
    "ForkOrigin.run": DATABASE,
    "NodeExecution.output": CAS,
    "Patch.ops": LARGE_JSON,
    "RunVersion.definition": LARGE_JSON,
    "Event.payload": LARGE_JSON,
}

# Lists of objects without a ``first`` argument, and their bound; any other counts as a full
# page. (A list of scalars is free whatever its length: it is one column of a row.)
LIST_SIZES: Mapping[str, int] = {
    "Approval.refusals": 10,
    "Query.nodeTypes": LISTED_NODE_TYPES,
}


def _is_list(type_: Any) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


@dataclass
class _Costing:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    defaults: Mapping[str, Any]  # the operation's variable defaults
    cap: int
    memo: dict[tuple[str, int | None], int]
    visiting: set[str]

    def page(self, node: FieldNode, field: Any) -> int:
        """The ``first`` the field runs with: sent, from a variable, or its default."""
        argument = field.args.get("first")
        value: Any = None
        for arg in node.arguments or ():
            if arg.name.value == "first":
                if isinstance(arg.value, IntValueNode):
                    value = int(arg.value.value)
                elif isinstance(arg.value, VariableNode):
                    name = arg.value.name.value
                    value = self.variables.get(name, self.defaults.get(name))
                break
        else:
            value = argument.default_value
        if not isinstance(value, int) or isinstance(value, bool):
            return self.cap
        return max(0, min(value, self.cap))

    def selections(
        self, selection_set: SelectionSetNode | None, parent: Any, page: int | None
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                on = selection.type_condition
                kind = self.schema.get_type(on.name.value) if on else parent
                total += self.selections(selection.selection_set, kind or parent, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value, page)
        return total

    def spread(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key in self.memo:
            return self.memo[key]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.visiting:
            return 0  # unknown or cyclic: validation refuses both
        self.visiting.add(name)
        try:
            kind = self.schema.get_type(fragment.type_condition.name.value)
            cost = self.selections(fragment.selection_set, kind, page)
        finally:
            self.visiting.discard(name)
        self.memo[key] = cost
        return cost

    def field(self, node: FieldNode, parent: Any, page: int | None) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType):
            return 0  # introspection; or an abstract parent, which this schema has none of
        field = parent.fields.get(name)
        if field is None:
            return 0  # validation refuses it
        key = f"{parent.name}.{name}"
        named = get_named_type(field.type)
        has_first = "first" in field.args
        size = self.page(node, field) if has_first else None
        if _is_list(field.type):
            if has_first:
                items = size or 0
            elif name == "edges" and page is not None:
                items = page
            else:
                items = LIST_SIZES.get(key, self.cap)
        else:
            items = 1
        per_item = 1 if is_composite_type(named) else 0
        # A connection's page size passes to its ``edges``; a list's own ``first`` is used up.
        inner_page = size if has_first and not _is_list(field.type) else None
        inner = self.selections(node.selection_set, named, inner_page)
        return WEIGHTS.get(key, 0) + items * (per_item + inner)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


def _defaults(operation: OperationDefinitionNode) -> Iterator[tuple[str, Any]]:
    for definition in operation.variable_definitions or ():
        if isinstance(definition.default_value, IntValueNode):
            yield definition.variable.name.value, int(definition.default_value.value)


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    cap: int = MAX_PAGE,
) -> int:
    """The cost of the operation ``operation_name`` of ``document`` (0 if there is no such
    operation: execution refuses it) with ``variables``."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    costing = _Costing(
        schema=schema,
        fragments={
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        },
        variables=variables or {},
        defaults=dict(_defaults(operation)),
        cap=cap,
        memo={},
        visiting=set(),
    )
    return costing.selections(operation.selection_set, root, None)


def _int_variables(variables: Mapping[str, Any] | None) -> tuple[tuple[str, int], ...]:
    """The variables that can be a page size: the rest cannot change a cost."""
    if not variables:
        return ()
    return tuple(sorted((k, v) for k, v in variables.items() if type(v) is int))


@lru_cache(maxsize=1_000)
def _cached_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: tuple[tuple[str, int], ...],
) -> int:
    # Keyed like the validation cache (the parser cache hands back the same document for
    # the same text), plus the integer variables: the same query costs nothing to judge again.
    return query_cost(schema, document, operation_name, dict(variables))


def too_costly(cost: int, limit: int) -> GraphQLError:
    return GraphQLError(
        f"query cost {cost:,} exceeds the limit of {limit:,}: ask for smaller pages "
        "(`first`) or fewer nested lists",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": limit},
    )


class CostLimiter(SchemaExtension):
    """Refuses an operation whose cost is over ``limit``, after validation and before any
    resolver runs. Placed after ValidationCache: it only judges a valid document."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            cost = _cached_cost(
                context.schema._schema,
                document,
                context.operation_name,
                _int_variables(context.variables),
            )
            if cost > self.limit:
                # A new list: the validation cache's (empty) one is shared between requests.
                context.pre_execution_errors = [too_costly(cost, self.limit)]
        yield
