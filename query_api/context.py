"""What every resolver gets: the caller's tenant, the database, the CAS, per-request loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from strawberry.fastapi import BaseContext

from cas import ContentStore
from query_api.progress import ProgressWatcher
from query_api.settings import QueryApiSettings


@dataclass
class ReadContext(BaseContext):
    pool: asyncpg.Pool
    cas: ContentStore
    watcher: ProgressWatcher
    settings: QueryApiSettings
    tenant: str  # every query filters on it; "" only for the GraphiQL page, which runs none
    nodes: Any = field(default=None)  # DataLoader[str, list[Node]], one per request
    patches: Any = field(default=None)  # DataLoader[str, list[Patch]], one per request
    versions: Any = field(default=None)  # DataLoader[str, list[RunVersion]], one per request

    def __post_init__(self) -> None:
        super().__init__()
