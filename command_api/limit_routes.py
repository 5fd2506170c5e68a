"""``/v1/limits``: the caller's tenant's limits, as one document (``limits.TenantLimits``).

``GET`` (scope ``read``) answers the document in effect: the tenant's own, or the defaults
if it has set none. ``PUT`` (scope ``admin``) replaces the whole document; a field left out
takes its default, so ``PUT {}`` goes back to the defaults. A document that breaks a rule is a
422 listing every reason, and nothing is stored. Every command API process uses the new
limits within a second (``limits.store``: at once where it listens for changes).

Limits are not events: like keys and secrets, they are the door's own state. The limit that
protects the deployment from its tenants is the operator's
(``AOB_COMMAND_API_GLOBAL_SUBMISSIONS_PER_MINUTE``), which no key can change.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from auth import Principal
from auth.scopes import ADMIN, READ
from command_api.context import CommandContext, require
from command_api.door import DoorRoute
from limits.tenant_limits import TenantLimits

router = APIRouter(prefix="/v1/limits", route_class=DoorRoute)

Reader = Annotated[Principal, Depends(require(READ))]
Admin = Annotated[Principal, Depends(require(ADMIN))]


def _ctx(request: Request) -> CommandContext:
    return request.app.state.commands  # type: ignore[no-any-return]


@router.get("")
async def show(request: Request, caller: Reader) -> JSONResponse:
    """The limits in effect for the caller's tenant."""
    limits = await _ctx(request).limits.get(caller.tenant)
    return JSONResponse(limits.model_dump(mode="json"))


@router.put("")
async def replace(request: Request, caller: Admin, command: TenantLimits) -> JSONResponse:
    """Replace the caller's tenant's limits; the answer is the document as stored."""
    await _ctx(request).limits.put(caller.tenant, command)
    return JSONResponse(command.model_dump(mode="json"))
