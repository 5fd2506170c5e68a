"""Limits on what one query may ask, and the parse/validation caches (FIELD_NOTES).

Extensions are given to Strawberry as factories, so no extension instance (which holds the
running request's execution context) is shared between concurrent requests. The limiter
rules are built once here, though: the validation cache is keyed by the rule classes, and
QueryDepthLimiter/MaxAliasesLimiter would build new classes per request, so every lookup
would miss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress

from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from query_api.cost import CostLimiter

MAX_DEPTH = 10  # runs > edges > node > nodes > output is 6: room to spare, none to abuse
MAX_ALIASES = 30
MAX_TOKENS = 2_000
CACHE_SIZE = 1_000  # distinct query texts kept parsed and validated

_RULES: list[type[ASTValidationRule]] = [depth_rule(MAX_DEPTH, None), alias_rule(MAX_ALIASES)]
# Strawberry's DisableIntrospection adds this very rule; listed here so the rule list stays
# one fixed list per setting, as the validation cache needs.
_RULES_WITHOUT_INTROSPECTION = [*_RULES, NoSchemaIntrospectionCustomRule]


class _ParserCache(ParserCache):
    """A parse error (a syntax error, too many tokens) is left to Strawberry's own parse.

    Strawberry's streaming path (subscriptions) does not catch an error raised in a parse
    hook: the operation died with no reason sent and a traceback logged. Leaving the
    document unparsed makes Strawberry parse it again inside its error handling, which
    answers as it does for any syntax error (over graphql-transport-ws: close 4400 with the
    message). Cheap: errors are not cached, and a parse stops at the token limit.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with suppress(GraphQLError):  # left unparsed: Strawberry parses it and answers
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


def extensions(*, max_cost: int, introspection: bool = True) -> list[Callable[[], SchemaExtension]]:
    """The limiters and caches, in order: the cost is judged after validation (the cached
    one), so only on a valid document."""
    rules = _RULES if introspection else _RULES_WITHOUT_INTROSPECTION
    return [
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(MAX_TOKENS),
        lambda: _ParserCache(CACHE_SIZE),
        lambda: ValidationCache(CACHE_SIZE),
        lambda: CostLimiter(max_cost),
    ]
