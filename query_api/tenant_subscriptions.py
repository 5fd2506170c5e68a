"""How many subscriptions each tenant has open in this process, across all its sockets.

``max_subscriptions_per_connection`` bounds one socket; a tenant could open many sockets, and
each open subscription holds a wake-up and reads the database on every change of its run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from query_api.errors import TooManySubscriptions


class TenantSubscriptions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, tenant: str) -> int:
        return self._open.get(tenant, 0)

    @contextmanager
    def slot(self, tenant: str) -> Iterator[None]:
        """Holds one of the tenant's slots while the subscription runs; TooManySubscriptions
        when none is free."""
        count = self._open.get(tenant, 0)
        if count >= self.limit:
            raise TooManySubscriptions(
                f"tenant {tenant!r} already has {count} subscriptions open, the most allowed "
                f"(AOB_QUERY_API_MAX_SUBSCRIPTIONS_PER_TENANT={self.limit}); close one first",
                limit=self.limit,
            )
        self._open[tenant] = count + 1
        try:
            yield
        finally:
            left = self._open[tenant] - 1
            if left:
                self._open[tenant] = left
            else:
                del self._open[tenant]
