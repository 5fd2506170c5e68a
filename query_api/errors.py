"""Errors of the query API. Each becomes a GraphQL error whose message says what to fix.

    QueryApiError
     ├── BadCursor           an ``after`` cursor this API did not issue
     ├── PageSizeOutOfRange  ``first`` outside 1..MAX_PAGE
     ├── PositionError       about a log position token (its ``token``)
     │    ├── BadPosition    an ``after`` position token that is not topic:partition:offset
     │    └── NotCaughtUp    the read side did not reach a position in time (retryable)
     ├── NoSuchRun           a subscription's run is not one of the caller's tenant
     ├── TooManySubscriptions the tenant has as many subscriptions open as it may
     ├── Unauthenticated     a subscription's API key is unknown, or no longer valid
     └── MissingScope        the API key lacks the scope a query needs (``read``)

On HTTP, a missing or unknown API key is a 401 answer, not a GraphQL error; on a WebSocket,
the connection is closed with code 4401 at ``connection_init``, and a key revoked later ends
each subscription with Unauthenticated. A key without the ``read`` scope is a 403 answer on
HTTP, and closes a WebSocket with code 4403 and a reason naming the scope.
"""

from __future__ import annotations


class QueryApiError(Exception):
    """Root of every error the query API raises on purpose."""


class BadCursor(QueryApiError):
    pass


class PageSizeOutOfRange(QueryApiError):
    pass


class PositionError(QueryApiError):
    """About a log position token, which it carries."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


class BadPosition(PositionError):
    pass


class NotCaughtUp(PositionError):
    pass


class NoSuchRun(QueryApiError):
    def __init__(self, run_id: str) -> None:
        # The same words whether the run does not exist or is another tenant's: a caller
        # learns nothing about runs it may not see.
        super().__init__(f"no run {run_id} for this key")
        self.run_id = run_id


class TooManySubscriptions(QueryApiError):
    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class Unauthenticated(QueryApiError):
    pass


class MissingScope(QueryApiError):
    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the {scope!r} scope")
        self.scope = scope
