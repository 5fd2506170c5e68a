"""Triggers: webhooks and schedules.

Webhooks: ``/v1/hooks`` to manage them (scope ``publish``), and ``POST /v1/hooks/{id}``,
where an outside system starts a run without an API key, by signing what it sends.

A delivery carries ``X-AOB-Timestamp`` (unix seconds) and ``X-AOB-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the hook's secret>``
(``triggers.signatures``). A missing or wrong signature, a timestamp outside the replay
window, or a signature used already (``triggers.hooks``) is a 401 with the reason; a good
one starts a run of the hook's workflow with the body (JSON; none gives a null input) as its
input, through the path ``POST /v1/runs`` takes (``run_submission.start_run``: its version, its
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
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from auth import Principal
from auth.scopes import PUBLISH, SUBMIT
from command_api import registry
from command_api.context import CommandContext, require
from command_api.door import DoorRoute, parse_body
from command_api.errors import (
    InvalidInput,
    NotAvailable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from command_api.routes import _accepted, _actor
from run_submission import append_event, check_input_size, start_run
from schemas import Actor, SubmitRun, deterministic_id, new_id
from schemas.canonical import canonical_json
from schemas.commands import MAX_REF_CHARS
from schemas.envelope import Event, build_event, utcnow
from schemas.events import (
    MAX_EVENT_DATA_BYTES,
    EventReceived,
    EventReceivedPayload,
    ScheduleChangedPayload,
    ScheduleCreated,
    ScheduleCreatedPayload,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
)
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS
from schemas.workflow_ids import workflow_id_for
from triggers import event_waits
from triggers.hooks import HookStore
from triggers.schedule_store import Schedule, ScheduleStore
from triggers.schedules import Cadence, InvalidSchedule, parse_every
from triggers.signatures import BadDelivery, check_signature, check_timestamp

router = APIRouter(prefix="/v1", route_class=DoorRoute)

Publisher = Annotated[Principal, Depends(require(PUBLISH))]
Submitter = Annotated[Principal, Depends(require(SUBMIT))]


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
    check_input_size(ctx, run_input)
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


# --- schedules -------------------------------------------------------------------------


class CreateSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=MAX_REF_CHARS)
    cron: str | None = Field(None, max_length=200, description="Five fields, minute resolution.")
    every: str | None = Field(None, max_length=20, description="An interval: 2s, 5m, 1h, 1d.")
    timezone: str = Field("UTC", max_length=100, description="IANA name the cron reads in.")
    overlap: Literal["skip", "allow"] = "allow"
    input: Any = None


def _schedules(request: Request) -> ScheduleStore:
    ctx: CommandContext = request.app.state.commands
    if ctx.schedules is None:
        raise NotAvailable("this command API has no schedules store")
    return ctx.schedules


def _cadence(command: CreateSchedule) -> Cadence:
    try:
        if (command.cron is None) == (command.every is None):
            raise InvalidSchedule("give a schedule `cron` or `every`, one of them")
        every_s = parse_every(command.every) if command.every is not None else None
        return Cadence(cron=command.cron, every_s=every_s, timezone=command.timezone)
    except InvalidSchedule as e:
        raise InvalidInput(str(e), errors=[str(e)]) from None


async def _schedule_event(
    ctx: CommandContext, caller: Principal, kind: type[Event], schedule_id: str, payload: Any
) -> str:
    event = build_event(kind, payload, aggregate_id=schedule_id, actor=_actor(caller))
    return await append_event(ctx, WORKFLOW_EVENTS, event)


@router.post("/schedules", status_code=201)
async def create_schedule(
    request: Request, command: CreateSchedule, caller: Publisher
) -> dict[str, Any]:
    """A schedule of a published workflow of the caller's: its first moment is the first
    one after now."""
    ctx: CommandContext = request.app.state.commands
    cadence = _cadence(command)
    check_input_size(ctx, command.input)
    workflow_id = workflow_id_for(caller.tenant, command.workflow)
    if await registry.find_version(ctx.pool, caller.tenant, workflow_id, None) is None:
        raise NotFound(
            f"workflow {command.workflow!r} not found; publish it with POST /v1/workflows"
        )
    schedule = Schedule(
        schedule_id=new_id(),
        tenant=caller.tenant,
        workflow=command.workflow,
        cron=cadence.cron,
        every_s=cadence.every_s,
        timezone=cadence.timezone,
        overlap=command.overlap,
        input=command.input,
        status="active",
        created_at=utcnow(),
    )
    payload = ScheduleCreatedPayload(
        schedule_id=schedule.schedule_id,
        workflow=schedule.workflow,
        cron=schedule.cron,
        every_s=schedule.every_s,
        timezone=schedule.timezone,
        overlap=command.overlap,
        input=schedule.input,
    )
    # In the log first: a schedule the clock fires always has its creation there.
    position = await _schedule_event(ctx, caller, ScheduleCreated, schedule.schedule_id, payload)
    await _schedules(request).add(schedule)
    next_due = cadence.after(schedule.created_at)
    return {**schedule.as_json(), "next_due": next_due.isoformat(), "position": position}


@router.get("/schedules")
async def list_schedules(request: Request, caller: Publisher) -> dict[str, Any]:
    found = await _schedules(request).of_tenant(caller.tenant)
    return {"schedules": [s.as_json() for s in found]}


async def _own(request: Request, caller: Principal, schedule_id: str) -> Schedule:
    schedule = await _schedules(request).get(caller.tenant, schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule


@router.get("/schedules/{schedule_id}")
async def show_schedule(request: Request, schedule_id: str, caller: Publisher) -> dict[str, Any]:
    """The schedule and its latest 100 moments: fired (with the run), skipped or missed."""
    schedule = await _own(request, caller, schedule_id)
    firings = await _schedules(request).firings(schedule_id)
    return {**schedule.as_json(), "firings": firings}


async def _set_status(
    request: Request, caller: Principal, schedule_id: str, status: str, kind: type[Event]
) -> dict[str, Any]:
    ctx: CommandContext = request.app.state.commands
    await _own(request, caller, schedule_id)
    position = await _schedule_event(
        ctx, caller, kind, schedule_id, ScheduleChangedPayload(schedule_id=schedule_id)
    )
    await _schedules(request).set_status(caller.tenant, schedule_id, status)
    return {"schedule_id": schedule_id, "status": status, "position": position}


@router.post("/schedules/{schedule_id}/pause")
async def pause_schedule(request: Request, schedule_id: str, caller: Publisher) -> dict[str, Any]:
    """No firing until resumed; the moments in between are not caught up."""
    return await _set_status(request, caller, schedule_id, "paused", SchedulePaused)


@router.post("/schedules/{schedule_id}/resume")
async def resume_schedule(request: Request, schedule_id: str, caller: Publisher) -> dict[str, Any]:
    return await _set_status(request, caller, schedule_id, "active", ScheduleResumed)


@router.delete("/schedules/{schedule_id}", status_code=204)
async def delete_schedule(request: Request, schedule_id: str, caller: Publisher) -> Response:
    ctx: CommandContext = request.app.state.commands
    await _own(request, caller, schedule_id)
    payload = ScheduleChangedPayload(schedule_id=schedule_id)
    await _schedule_event(ctx, caller, ScheduleDeleted, schedule_id, payload)
    await _schedules(request).delete(caller.tenant, schedule_id)
    return Response(status_code=204)


# --- outside events (wait_event nodes) -------------------------------------------------


class PostEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=500, description="The event's name.")
    key: str = Field(min_length=1, max_length=500, description="Its correlation key (text).")
    data: Any = Field(None, description="What the waiting nodes output (at most 16 KiB).")


@router.post("/events", status_code=202)
async def post_event(request: Request, command: PostEvent, caller: Submitter) -> dict[str, Any]:
    """Deliver an outside event to every wait_event node of the caller's tenant waiting now
    for its name and key (``triggers.event_waits``): one ``run.event_received`` to each run,
    and the coordinator decides. An event no node waits for reaches nothing and is not
    kept; ``delivered_to`` says which runs and nodes it reached."""
    ctx: CommandContext = request.app.state.commands
    size = len(canonical_json(command.data))
    if size > MAX_EVENT_DATA_BYTES:
        raise PayloadTooLarge(
            f"the event's data is {size} bytes; the limit is {MAX_EVENT_DATA_BYTES} (it "
            "becomes the waiting node's output): put large values in the CAS or a URL"
        )
    posted_id = new_id()
    waiters = await event_waits.take(ctx.pool, caller.tenant, command.name, command.key)
    delivered = []
    try:
        for waiter in waiters:
            payload = EventReceivedPayload(
                node_id=waiter.node_id,
                attempt=waiter.attempt,
                name=command.name,
                key=command.key,
                data=command.data,
                posted_id=posted_id,
            )
            event = build_event(
                EventReceived,
                payload,
                event_id=deterministic_id(
                    "event-received", posted_id, waiter.run_id, waiter.node_id
                ),
                aggregate_id=waiter.run_id,
                actor=_actor(caller),
            )
            position = await append_event(ctx, RUN_EVENTS, event)
            delivered.append(
                {"run_id": waiter.run_id, "node_id": waiter.node_id, "position": position}
            )
    except Exception:
        reached = {(d["run_id"], d["node_id"]) for d in delivered}
        rest = [w for w in waiters if (w.run_id, w.node_id) not in reached]
        await event_waits.give_back(ctx.pool, caller.tenant, command.name, command.key, rest)
        raise
    return {
        "event_id": posted_id,
        "name": command.name,
        "key": command.key,
        "delivered_to": delivered,
    }
