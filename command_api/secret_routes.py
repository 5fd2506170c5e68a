"""``/v1/secrets``: a tenant's secrets, for a key with the ``admin`` scope.

``PUT /v1/secrets/{name}`` ``{"value": "..."}`` sets (or replaces) one, sealed here before it
reaches PostgreSQL; ``GET /v1/secrets`` lists names and dates; ``DELETE /v1/secrets/{name}``
removes one. No answer, error or log line carries a value: no event is appended either (a
secret is not part of any run's history, and the log is kept forever).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from auth import Principal
from command_api.context import CommandContext, require
from command_api.door import DoorRoute
from command_api.errors import InvalidInput, NotAvailable, NotFound
from schemas.secret_refs import MAX_SECRET_VALUE_BYTES
from secret_store import InvalidSecret, SecretNotFound, SecretStore

router = APIRouter(prefix="/v1", route_class=DoorRoute)

Admin = Annotated[Principal, Depends(require("admin"))]


class SetSecret(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # Bounded again by bytes in ``secret_store.check_value``; characters bound it first.
    value: str = Field(min_length=1, max_length=MAX_SECRET_VALUE_BYTES)


def _store(request: Request) -> SecretStore:
    ctx: CommandContext = request.app.state.commands
    if ctx.secrets is None:
        raise NotAvailable("this command API has no secrets store")
    return ctx.secrets


@router.put("/secrets/{name}", status_code=204)
async def set_secret(request: Request, name: str, command: SetSecret, caller: Admin) -> Response:
    try:
        await _store(request).put(caller.tenant, name, command.value)
    except InvalidSecret as e:
        raise InvalidInput(str(e), errors=[str(e)]) from None
    return Response(status_code=204)


@router.get("/secrets")
async def list_secrets(request: Request, caller: Admin) -> dict[str, Any]:
    infos = await _store(request).list(caller.tenant)
    return {"secrets": [i.as_json() for i in infos]}


@router.delete("/secrets/{name}", status_code=204)
async def delete_secret(request: Request, name: str, caller: Admin) -> Response:
    try:
        await _store(request).delete(caller.tenant, name)
    except InvalidSecret as e:
        raise InvalidInput(str(e), errors=[str(e)]) from None
    except SecretNotFound:
        raise NotFound(f"secret {name!r} not found") from None
    return Response(status_code=204)
