"""The GraphQL schema (API.md): the Query and Subscription roots assembled, with our faults
masked and the client's mistakes answered. The types are in ``*_types.py``, camelCase on the
wire; tests/snapshots/schema.graphql locks the SDL."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from cas import CasError
from query_api.errors import QueryApiError
from query_api.limits import extensions
from query_api.queries import Query
from query_api.settings import QueryApiSettings
from query_api.subscriptions import Subscription


def _is_internal(error: GraphQLError) -> bool:
    """A fault of ours (a database error, a bug), not of the query: its text may show
    internals, so the client gets a generic message and the log gets the traceback."""
    original = error.original_error
    return original is not None and not isinstance(original, QueryApiError | CasError)


class ReadSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # A client's mistake (a bad cursor, a syntax error) is answered, not logged.
        super().process_errors([e for e in errors if _is_internal(e)], execution_context)


def build_schema(settings: QueryApiSettings | None = None) -> ReadSchema:
    """The schema with the limits ``settings`` set (the cost limit, introspection)."""
    settings = settings or QueryApiSettings()
    limits = extensions(max_cost=settings.max_query_cost, introspection=settings.introspection)
    return ReadSchema(
        query=Query,
        subscription=Subscription,
        extensions=[*limits, lambda: MaskErrors(should_mask_error=_is_internal)],
    )


# With the default settings: what the SDL snapshot locks, and what tests execute against.
schema = build_schema(QueryApiSettings.model_construct())
