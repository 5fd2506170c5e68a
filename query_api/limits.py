"""Limits on what one query may ask, and the parse/validation caches (FIELD_NOTES).

Extensions are given to Strawberry as factories, so no extension instance (which holds the
running request's execution context) is shared between concurrent requests. The limiter
rules are built once here, though: the validation cache is keyed by the rule classes, and
QueryDepthLimiter/MaxAliasesLimiter would build new classes per request, so every lookup
would miss.
"""

from __future__ import annotations

from collections.abc import Callable

from graphql.validation import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

MAX_DEPTH = 10  # runs > edges > node > nodes > output is 6: room to spare, none to abuse
MAX_ALIASES = 30
MAX_TOKENS = 2_000
CACHE_SIZE = 1_000  # distinct query texts kept parsed and validated

_RULES: list[type[ASTValidationRule]] = [depth_rule(MAX_DEPTH, None), alias_rule(MAX_ALIASES)]


def extensions() -> list[Callable[[], SchemaExtension]]:
    return [
        lambda: AddValidationRules(_RULES),
        lambda: MaxTokensLimiter(MAX_TOKENS),
        lambda: ParserCache(CACHE_SIZE),
        lambda: ValidationCache(CACHE_SIZE),
    ]
