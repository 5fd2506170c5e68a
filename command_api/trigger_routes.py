"""Webhooks: ``/v1/hooks`` to manage them (scope ``publish``), and ``POST /v1/hooks/{id}``,
where an outside system starts a run without an API key, by signing what it sends.

A delivery carries ``X-AOB-Timestamp`` (unix seconds) and ``X-AOB-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the hook's secret>``
(``triggers.signatures``). A missing or wrong signature, a timestamp outside the replay
window, or a signature used already (``triggers.hooks``) is a 401 with the reason; a good
one starts a run of the hook's workflow with the body (JSON; none gives a null input) as its
input, through the path ``POST /v1/runs`` takes (``routes.start_run``: its version, its
limits, its admission), and answers 202 with the run's id.

The run's id and its event's id derive from (hook, signature), so one delivery can only
ever name one run: two processes taking it at once cannot both pass the signature table,
and a delivery refused after its signature was taken (its workflow gone, admission's 429, an
append that failed) gives the signature back, so the sender may send the same delivery again
and, if the first append did reach the log, its event is the same one, dropped downstream
as a duplicate.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from auth import Principal
from auth.scopes import PUBLISH
from command_api import registry
from command_api.context import CommandContext, require
from command_api.door import DoorRoute, parse_body
from command_api.errors import NotAvailable, NotFound, Unauthorized
from command_api.routes import _accepted, _check_input_size, start_run
from schemas import Actor, SubmitRun, deterministic_id
from schemas.commands import MAX_REF_CHARS
from schemas.workflow_ids import workflow_id_for
from triggers.hooks import HookStore
from triggers.signatures import BadDelivery, check_signature, check_timestamp

router = APIRouter(prefix="/v1", route_class=DoorRoute)

Publisher = Annotated[Principal, Depends(require(PUBLISH))]


class CreateHook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(
        min_length=1, max_length=MAX_REF_CHARS, description="The workflow (id or name) it starts."
    )


def _hooks(request: Request) -> HookStore:
    ctx: CommandContext = request.app.state.commands
    if ctx.hooks is None:
        raise NotAvailable("this command API has no webhooks store")
    return ctx.hooks


@router.post("/hooks", status_code=201)
async def create_hook(request: Request, command: CreateHook, caller: Publisher) -> dict[str, Any]:
    """A hook starting runs of a published workflow of the caller's; its secret is in this
    answer only."""
    ctx: CommandContext = request.app.state.commands
    workflow_id = workflow_id_for(caller.tenant, command.workflow)
    if await registry.find_version(ctx.pool, caller.tenant, workflow_id, None) is None:
        raise NotFound(
            f"workflow {command.workflow!r} not found; publish it with POST /v1/workflows"
        )
    hook, secret = await _hooks(request).create(caller.tenant, command.workflow)
    return {**hook.as_json(), "secret": secret, "url": f"/v1/hooks/{hook.hook_id}"}


@router.get("/hooks")
async def list_hooks(request: Request, caller: Publisher) -> dict[str, Any]:
    return {"hooks": [h.as_json() for h in await _hooks(request).list(caller.tenant)]}


@router.delete("/hooks/{hook_id}", status_code=204)
async def delete_hook(request: Request, hook_id: str, caller: Publisher) -> Response:
    if not await _hooks(request).delete(caller.tenant, hook_id):
        raise NotFound(f"hook {hook_id!r} not found")
    return Response(status_code=204)


@router.post("/hooks/{hook_id}", status_code=202)
async def deliver(request: Request, hook_id: str) -> JSONResponse:
    """A signed delivery: a run of the hook's workflow with the body as its input."""
    ctx: CommandContext = request.app.state.commands
    hooks = _hooks(request)
    found = await hooks.find(hook_id)
    if found is None:
        raise NotFound(f"hook {hook_id!r} not found")
    hook, secret = found
    ctx.check_rate(hook.tenant)
    body = await request.body()
    window = ctx.settings.webhook_window_s
    try:
        timestamp = check_timestamp(request.headers.get("x-aob-timestamp"), time.time(), window)
        signature = check_signature(secret, timestamp, request.headers.get("x-aob-signature"), body)
    except BadDelivery as e:
        raise Unauthorized(e.reason) from None
    run_input = parse_body(body) if body.strip() else None  # 400/422 before the signature is taken
    _check_input_size(ctx, run_input)
    if not await hooks.use_signature(hook_id, signature, window):
        raise Unauthorized(
            f"this signature was used already: a delivery is taken once (within {window} s); "
            "sign a new one with the current time"
        )
    run_id = deterministic_id("webhook-run", hook_id, signature)
    try:
        event, position = await start_run(
            ctx,
            hook.tenant,
            Actor(kind="system", id=f"webhook/{hook_id}", tenant=hook.tenant),
            SubmitRun(workflow_id=hook.workflow, input=run_input),
            run_id=run_id,
            event_id=deterministic_id("webhook-submit", hook_id, signature),
        )
    except Exception:
        await hooks.release_signature(hook_id, signature)
        raise
    status, answer = _accepted(event, position, run_id=run_id, hook_id=hook_id)
    return JSONResponse(answer, status_code=status)
