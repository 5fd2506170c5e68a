"""What starting a run needs: connections, the CAS, the tenant's limits and admissions.

``SubmissionContext`` is the shape ``start_run`` reads; the command API's ``CommandContext``
has it, and ``SubmissionPorts`` is the same for a process that serves no HTTP (the
coordinator's schedule clock, the workers' subworkflow node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from cas import ContentStore
from command_api.registry import Registry
from command_api.settings import CommandApiSettings
from infra.bus import EventBus
from limits.admission_check import Admissions
from limits.store import LimitsStore
from limits.tenant_limits import TenantLimits
from run_submission.versions import CompiledVersion, VersionCache

__all__ = ["CompiledVersion", "SubmissionContext", "SubmissionPorts"]


class SubmissionContext(Protocol):
    pool: asyncpg.Pool
    bus: EventBus
    cas: ContentStore
    # The limits on what a run may carry (``AOB_COMMAND_API_*``): every starter applies the
    # same ones, whichever process it runs in.
    settings: CommandApiSettings
    limits: LimitsStore
    admissions: Admissions
    registry: Registry

    async def tenant_limits(self, tenant: str) -> TenantLimits: ...

    async def load_version(
        self, definition_ref: str, ir_ref: str, version: str
    ) -> CompiledVersion: ...


@dataclass
class SubmissionPorts:
    """A ``SubmissionContext`` of its own, for a process that starts runs but serves no HTTP."""

    pool: asyncpg.Pool
    bus: EventBus
    cas: ContentStore
    settings: CommandApiSettings = field(default_factory=CommandApiSettings)
    limits: LimitsStore = field(init=False)
    admissions: Admissions = field(init=False)
    registry: Registry = field(init=False)
    versions: VersionCache = field(default_factory=VersionCache)

    def __post_init__(self) -> None:
        self.limits = LimitsStore(self.pool)
        self.admissions = Admissions(self.pool)
        self.registry = Registry(self.pool)

    async def tenant_limits(self, tenant: str) -> TenantLimits:
        return await self.limits.get(tenant)

    async def load_version(self, definition_ref: str, ir_ref: str, version: str) -> CompiledVersion:
        return await self.versions.load(self.cas, definition_ref, ir_ref, version)
