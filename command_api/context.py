"""What the routes share: connections, the CAS, limits, and the caller's identity."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import asyncpg
from fastapi import Request

from auth import Principal, authenticate
from cas import ContentStore
from command_api.errors import RateLimited, Unauthorized
from command_api.ratelimit import TokenBuckets
from command_api.settings import CommandApiSettings
from infra.bus import EventBus
from schemas import WorkflowIR

IR_CACHE_SIZE = 256


@dataclass
class CommandContext:
    pool: asyncpg.Pool
    bus: EventBus
    cas: ContentStore
    settings: CommandApiSettings
    buckets: TokenBuckets
    bus_started: bool = False
    # Versions are immutable, so a compiled IR never goes stale: keep the recent ones.
    _irs: OrderedDict[str, WorkflowIR] = field(default_factory=OrderedDict)

    def check_rate(self, tenant: str) -> None:
        wait = self.buckets.take(tenant)
        if wait > 0:
            raise RateLimited(f"tenant {tenant!r} is over its request rate; retry later", wait)

    def remember_ir(self, ir: WorkflowIR) -> None:
        self._irs[ir.version] = ir
        self._irs.move_to_end(ir.version)
        while len(self._irs) > IR_CACHE_SIZE:
            self._irs.popitem(last=False)

    async def load_ir(self, ref: str, version: str) -> WorkflowIR:
        ir = self._irs.get(version)
        if ir is None:
            ir = WorkflowIR.model_validate(await self.cas.get_json(ref))
            self.remember_ir(ir)
        return ir


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
