"""Errors of the query API. Each becomes a GraphQL error whose message says what to fix.

    QueryApiError
     ├── BadCursor           an ``after`` cursor this API did not issue
     ├── BadPosition         an ``after`` position token that is not topic:partition:offset
     ├── PageSizeOutOfRange  ``first`` outside 1..MAX_PAGE
     └── NotCaughtUp         the read side did not reach a position in time (retryable)

A missing or unknown API key is not among them: it is a 401 HTTP answer, not a GraphQL error.
"""

from __future__ import annotations


class QueryApiError(Exception):
    """Root of every error the query API raises on purpose."""


class BadCursor(QueryApiError):
    pass


class BadPosition(QueryApiError):
    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


class PageSizeOutOfRange(QueryApiError):
    pass


class NotCaughtUp(QueryApiError):
    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token
