"""What every resolver gets: the caller's tenant, the database, the CAS, per-request loaders."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field, fields
from typing import Any

import asyncpg
from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from cas import ContentStore
from query_api.progress import ProgressWatcher
from query_api.run_changes import RunChanges
from query_api.settings import QueryApiSettings
from query_api.tenant_subscriptions import TenantSubscriptions


@dataclass
class ReadContext(BaseContext):
    """One per HTTP request, or one per WebSocket connection (shared by its subscriptions)."""

    pool: asyncpg.Pool
    cas: ContentStore
    watcher: ProgressWatcher
    settings: QueryApiSettings
    # Every query filters on it; "" for the GraphiQL page, which runs none, and for a
    # WebSocket until its connection_init brings a key.
    tenant: str
    nodes: Any = field(default=None)  # DataLoader[str, list[Node]], one per request
    patches: Any = field(default=None)  # DataLoader[str, list[Patch]], one per request
    versions: Any = field(default=None)  # DataLoader[str, list[RunVersion]], one per request
    run_changes: RunChanges | None = None  # wakes subscriptions when a run changed
    # The ``Bearer <key>`` the caller authenticated with: checked again before every
    # message a subscription sends, so a revoked key stops a long-lived one.
    authorization: str | None = None
    # The process's count of open subscriptions per tenant (None: not counted, in tests).
    subscriptions: TenantSubscriptions | None = None
    approvals: Any = field(default=None)  # DataLoader[str, list[Approval]], one per request
    events: Any = field(default=None)  # DataLoader[EventsKey, list[Record]], one per request

    def __post_init__(self) -> None:
        super().__init__()

    def forget_run(self, run_id: str) -> None:
        """Drop what the loaders cached of ``run_id``: a connection's context outlives a
        message, and each message must show the run as it is now."""
        for f in fields(self):
            loader = getattr(self, f.name)
            if isinstance(loader, DataLoader):
                with suppress(KeyError):  # not loaded yet
                    loader.clear(run_id)
        if isinstance(self.events, DataLoader):
            # Keyed by (run_id, limit, after), not by run: every page goes (few are held).
            self.events.clear_all()
