"""What the routes share: connections, the CAS, limits, and the caller's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field

import asyncpg
from fastapi import Depends, Request

from auth import SCOPES, Principal, authenticate
from cas import ContentStore
from command_api.errors import Forbidden, RateLimited, Unauthorized
from command_api.registry import Registry
from command_api.settings import CommandApiSettings
from infra.bus import EventBus
from infra.ratelimit import TokenBuckets
from limits.admission_check import Admissions, whole_seconds
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from node_types import NodeTypeRegistry
from run_submission.versions import CompiledVersion, VersionCache
from secret_store import SecretStore
from triggers.hooks import HookStore
from triggers.schedule_store import ScheduleStore


@dataclass
class CommandContext:
    pool: asyncpg.Pool
    bus: EventBus
    cas: ContentStore
    settings: CommandApiSettings
    buckets: TokenBuckets
    bus_started: bool = False
    # Where a run's history is read from, straight from the log (forks: ``infra.run_log``).
    kafka_bootstrap: str = ""
    # Tenants' secrets, sealed here and opened only by the workers (``secret_store``).
    secrets: SecretStore | None = None
    # Tenants' limits, and the admissions counted against them, in PostgreSQL: given, or
    # made on the pool.
    limits_store: InitVar[LimitsStore | None] = None
    admissions_on: InitVar[Admissions | None] = None
    limits: LimitsStore = field(init=False)
    admissions: Admissions = field(init=False)
    # The registry lookups and writes of run starts, a burst's shared (``infra.coalesce``).
    registry: Registry = field(init=False)
    # Node types of tenants' own workers (``node_types``), and the partitions of the worker
    # topic one gets when it is registered.
    node_types: NodeTypeRegistry = field(init=False)
    topic_partitions: int = 4
    # Webhooks: which workflow each starts, their sealed secrets, the signatures used.
    hooks: HookStore | None = None
    # Schedules: the command side's view of their events (the clock is the coordinator's).
    schedules: ScheduleStore | None = None
    # Versions are immutable, so a compiled IR never goes stale: keep the recent ones.
    versions: VersionCache = field(default_factory=VersionCache)

    def __post_init__(
        self, limits_store: LimitsStore | None, admissions_on: Admissions | None
    ) -> None:
        self.limits = limits_store or LimitsStore(self.pool)
        self.admissions = admissions_on or Admissions(self.pool)
        self.registry = Registry(self.pool)
        self.node_types = NodeTypeRegistry(self.pool)

    def check_rate(self, tenant: str) -> None:
        """The first, cheap guard: this process's token bucket of the tenant's requests."""
        wait = self.buckets.take(tenant)
        if wait > 0:
            retry = whole_seconds(wait)
            raise RateLimited(
                f"tenant {tenant}: this process allows {self.buckets.rate:g} requests a second "
                f"(bursts of {self.buckets.burst}); retry in {retry} s",
                retry,
                limit={
                    "name": "requests",
                    "per_second": self.buckets.rate,
                    "burst": self.buckets.burst,
                    "retry_after_s": retry,
                },
            )

    async def tenant_limits(self, tenant: str) -> TenantLimits:
        return await self.limits.get(tenant)

    def remember(self, compiled: CompiledVersion) -> None:
        self.versions.remember(compiled)

    async def load_version(self, definition_ref: str, ir_ref: str, version: str) -> CompiledVersion:
        """The version's definition and IR (``run_submission.versions``)."""
        return await self.versions.load(self.cas, definition_ref, ir_ref, version)


async def principal_of(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; 401 otherwise."""
    ctx: CommandContext = request.app.state.commands
    principal = await authenticate(ctx.pool, request.headers.get("authorization"))
    if principal is None:
        raise Unauthorized(
            "missing or unknown API key: send 'Authorization: Bearer <key>' "
            "(create one with `aob keys create --tenant NAME`)"
        )
    # Rate-limited per tenant before the body is looked at: a flood costs us little.
    ctx.check_rate(principal.tenant)
    return principal


def require(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency giving the caller (``principal_of``) if its key holds ``scope``, and a
    403 naming the scope if not: ``caller: Annotated[Principal, Depends(require("approve"))]``.
    The dependency carries its scope as ``.scope``, so the scope of every route can be read
    (and checked) from the app."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")

    async def holds(principal: Principal = Depends(principal_of)) -> Principal:  # noqa: B008
        if not principal.allows(scope):
            raise Forbidden(scope)
        return principal

    holds.scope = scope  # type: ignore[attr-defined]
    holds.__name__ = f"require_{scope}"
    return holds
