"""/v1/keys: an admin key manages the keys of its own tenant.

A tenant's first key is made by an operator (``aob keys create``, on the deployment); give it
the ``admin`` scope and it makes, lists and revokes the tenant's other keys here. Nothing here
reaches another tenant: a key id of another tenant is a 404, as one that does not exist.
Keys are not events: they are the door's own state, not the workflows' history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from auth import Principal, UnknownScope, create_key, list_keys, revoke_key
from auth.api_keys import MAX_NAME_CHARS
from auth.scopes import ADMIN, SCOPES
from command_api.context import CommandContext, require
from command_api.door import DoorRoute
from command_api.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v1/keys", route_class=DoorRoute)

Admin = Annotated[Principal, Depends(require(ADMIN))]


class CreateKey(BaseModel):
    """``POST /v1/keys``: what the new key may do, and a label for people."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(
        default=None,
        max_length=len(SCOPES),
        description=f"Some of {', '.join(SCOPES)}; left out: every scope but admin.",
    )
    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)


def _ctx(request: Request) -> CommandContext:
    return request.app.state.commands  # type: ignore[no-any-return]


@router.post("", status_code=201)
async def create(
    request: Request,
    caller: Admin,
    command: Annotated[CreateKey, Body()] = CreateKey(),  # noqa: B008
) -> JSONResponse:
    """A new key of the caller's tenant; the answer's ``key`` is shown once."""
    if command.scopes is not None and not command.scopes:
        reason = "scopes: give at least one scope, or leave scopes out for the default"
        raise InvalidInput(reason, errors=[reason])
    if command.name is not None and not command.name.isprintable():
        reason = "name: a key's name is a label of printable characters"
        raise InvalidInput(reason, errors=[reason])
    try:
        made = await create_key(_ctx(request).pool, caller.tenant, command.scopes, command.name)
    except UnknownScope as e:
        reason = f"scopes: {e}"
        raise InvalidInput(reason, errors=[reason], unknown=e.scopes) from None
    return JSONResponse({"key": made.key, **made.info.as_json()}, status_code=201)


@router.get("")
async def listed(request: Request, caller: Admin) -> JSONResponse:
    """Every key of the caller's tenant, revoked ones too; never a hash or a secret."""
    keys = await list_keys(_ctx(request).pool, caller.tenant)
    return JSONResponse({"keys": [k.as_json() for k in keys]})


@router.delete("/{key_id}")
async def revoke(request: Request, caller: Admin, key_id: str) -> JSONResponse:
    """Revoke a key of the caller's tenant: refused by every process within a second."""
    revoked = await revoke_key(_ctx(request).pool, key_id, caller.tenant)
    if revoked is None:
        raise NotFound(f"key {key_id!r} not found")
    return JSONResponse(revoked.as_json())
