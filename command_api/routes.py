"""The /v1 commands. Each validates, is admitted under its limits (runs, forks, patches and
approvals: ``command_api.admission``), appends one event, and answers with its position."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Request
from fastapi.responses import JSONResponse

from auth import Principal
from auth.scopes import APPROVE, PATCH, PUBLISH, SUBMIT
from command_api import registry
from command_api.admission import admit_action
from command_api.budgets import check_models
from command_api.context import CommandContext, require
from command_api.door import DoorRoute, parsed_body
from command_api.errors import InvalidInput, NotFound, PayloadTooLarge
from command_api.idempotency import Answer, keyed_id, once, request_hash
from command_api.subworkflow_refs import unknown_subworkflows
from infra.run_log import read_run, until
from limits.admission_check import Action
from node_types import BUILT_IN_TYPES
from run_model import fold
from run_submission import (
    CompiledVersion,
    append_event,
    check_input_size,
    encode_record,
    start_run,
)
from schemas import (
    Actor,
    ApprovalSubmitted,
    CancelRun,
    DecideApproval,
    ForkRun,
    PatchSubmitted,
    PublishWorkflow,
    RunCancelRequested,
    RunForked,
    SubmitPatch,
    SubmitRun,
    WorkflowIR,
    WorkflowPublished,
    canonical_json,
    compile_workflow,
    new_id,
)
from schemas.compiler import used_node_types
from schemas.envelope import Event, Payload, build_event
from schemas.events import (
    MAX_EVENT_BYTES,
    ApprovalSubmittedPayload,
    PatchSubmittedPayload,
    RunCancelRequestedPayload,
    RunForkedPayload,
    WorkflowPublishedPayload,
)
from schemas.ir import IRNodeType
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS
from schemas.workflow import AGENT_TOOLS, NODE_ID_PATTERN
from schemas.workflow_ids import workflow_id_for

# Every /v1 request passes the door (``command_api.door``) before anything else looks at it.
router = APIRouter(prefix="/v1", route_class=DoorRoute)

# What a run.submitted event carries besides its definition, IR and input: the envelope,
# the workflow's name, id, version and references. Generous: it is a few hundred bytes.
RUN_EVENT_ROOM = 16 * 1024

# The caller of each route, holding the scope the route needs (403 naming it otherwise).
Publisher = Annotated[Principal, Depends(require(PUBLISH))]
Submitter = Annotated[Principal, Depends(require(SUBMIT))]  # runs, cancels, forks
Approver = Annotated[Principal, Depends(require(APPROVE))]
Patcher = Annotated[Principal, Depends(require(PATCH))]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _ctx(request: Request) -> CommandContext:
    return request.app.state.commands  # type: ignore[no-any-return]


def _actor(principal: Principal) -> Actor:
    return Actor(kind="user", id=principal.key_id, tenant=principal.tenant)


def _published_answer(v: registry.PublishedVersion) -> dict[str, Any]:
    return {
        "workflow_id": v.workflow_id,
        "version": v.version,
        "event_id": v.event_id,
        "position": v.position,
    }


def _check_runnable_size(ctx: CommandContext, definition: dict[str, Any], ir: WorkflowIR) -> None:
    """413 for a definition whose runs could never be submitted: each run's run.submitted
    event carries the definition and its IR inline, with the run's input (up to
    ``max_input_bytes``), and an event has at most MAX_EVENT_BYTES. Refused at publish, not
    at every submission after it."""
    size = len(canonical_json(definition)) + len(ir.model_dump_json())
    room = MAX_EVENT_BYTES - ctx.settings.max_input_bytes - RUN_EVENT_ROOM
    if size > room:
        raise PayloadTooLarge(
            f"the definition and its compiled form come to {size} bytes, and each run carries "
            f"both in one event with its input (up to {ctx.settings.max_input_bytes} bytes): "
            f"they may have at most {room} bytes; make node configs smaller (large values "
            "belong in the run's input)"
        )


def _accepted(event: Event, position: str, **answer: Any) -> Answer:
    """202 with what the command's answer names, then the appended event and its position
    (a client waits for that position on the read side)."""
    return 202, {**answer, "event_id": event.event_id, "position": position}


async def _to_run(
    request: Request,
    caller: Principal,
    run_id: str,
    kind: type[Event],
    payload: Payload,
    /,
    *,
    scope: str,
    idempotency_key: str | None,
    admitted_as: Action | None = None,
    id_as: str | None = None,
    **answer: str,
) -> JSONResponse:
    """Append a command's event to a run of the caller's tenant (404 if there is none), once
    per Idempotency-Key (the event's id is then derived from (``scope``, tenant, key)), and
    answer 202 with the event's id under ``id_as`` if given, then ``answer``, then the
    event's id and position. With ``admitted_as``, the command counts against that limit of
    the tenant's, once the run is known to be theirs (429 if it has no room)."""
    ctx = _ctx(request)
    event = build_event(
        kind,
        payload,
        event_id=keyed_id(scope, caller.tenant, idempotency_key),
        aggregate_id=run_id,
        actor=_actor(caller),
    )
    record = encode_record(event)  # a refusal costs no database round trip

    async def append() -> Answer:
        if not await registry.run_exists(ctx.pool, caller.tenant, run_id):
            raise NotFound(f"run {run_id!r} not found")
        if admitted_as is not None:
            await admit_action(ctx, caller.tenant, admitted_as)
        position = await append_event(ctx, RUN_EVENTS, event, record=record)
        named = {id_as: event.event_id} if id_as else {}
        return _accepted(event, position, **named, **answer)

    return await _idempotent(request, caller, idempotency_key, append)


async def _idempotent(
    request: Request, principal: Principal, key: str | None, command: Any
) -> JSONResponse:
    ctx = _ctx(request)
    fingerprint = (
        request_hash(request.method, request.url.path, await parsed_body(request)) if key else ""
    )
    status, body = await once(
        ctx.pool,
        principal.tenant,
        key,
        fingerprint,
        command,
        wait_s=ctx.settings.idempotency_wait_s,
    )
    return JSONResponse(body, status_code=status)


async def _registered_types(
    ctx: CommandContext, caller: Principal, command: PublishWorkflow
) -> dict[str, IRNodeType]:
    """The caller's registered types among those the definition names (``node_types``):
    one round trip, and none for a definition of built-in types only."""
    names = used_node_types(command.definition) - BUILT_IN_TYPES - AGENT_TOOLS
    if not names:
        return {}
    found = await ctx.node_types.find(caller.tenant, sorted(names))
    return {name: t.for_ir() for name, t in found.items()}


@router.post("/workflows", status_code=201)
async def publish_workflow(
    request: Request,
    caller: Publisher,
    command: PublishWorkflow,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Validate and compile a definition, store both in the CAS, append WorkflowPublished."""
    ctx = _ctx(request)
    # InvalidWorkflow -> 422 with every reason, a config that breaks its type's schema too.
    ir = compile_workflow(command.definition, await _registered_types(ctx, caller, command))
    definition = command.definition.canonical()
    _check_runnable_size(ctx, definition, ir)
    check_models(definition["nodes"], (await ctx.tenant_limits(caller.tenant)).agents)
    unknown = await unknown_subworkflows(ctx.pool, caller.tenant, command.name, definition)
    if unknown:
        raise InvalidInput(
            "the workflow calls what the tenant does not have: " + "; ".join(unknown),
            errors=unknown,
        )

    async def publish() -> Answer:
        workflow_id = workflow_id_for(caller.tenant, command.name)
        latest = await registry.find_version(ctx.pool, caller.tenant, workflow_id, None)
        if latest is not None and latest.version == ir.version:
            # The same definition again: nothing changes, so nothing is appended; the answer
            # is the version's own event and position (a client waiting on it sees it done).
            return 201, _published_answer(latest)
        known = await registry.find_version(ctx.pool, caller.tenant, workflow_id, ir.version)
        if known is None:
            definition_ref, _ = await ctx.cas.put_json(definition)
            ir_ref, _ = await ctx.cas.put_json(ir.model_dump(mode="json"))
        else:
            # An older version published again becomes the latest once more: that is a
            # change the read side must see, so it is a new event (blobs are already stored).
            definition_ref, ir_ref = known.definition_ref, known.ir_ref
        payload = WorkflowPublishedPayload(
            workflow_id=workflow_id,
            name=command.name,
            version=ir.version,
            definition=definition,
            definition_ref=definition_ref,
            ir_ref=ir_ref,
        )
        event = build_event(
            WorkflowPublished,
            payload,
            event_id=keyed_id("publish", caller.tenant, idempotency_key),
            aggregate_id=workflow_id,
            actor=_actor(caller),
        )
        # Appended before the registry row: a version runs can be bound to is always in the
        # log. A crash in between leaves an event without a row; publishing again fixes it.
        position = await append_event(ctx, WORKFLOW_EVENTS, event)
        published = registry.PublishedVersion(
            workflow_id, ir.version, command.name, definition_ref, ir_ref, event.event_id, position
        )
        ctx.remember(CompiledVersion(definition, ir))
        await registry.record_version(ctx.pool, caller.tenant, published)
        return 201, _published_answer(published)

    return await _idempotent(request, caller, idempotency_key, publish)


@router.post("/runs", status_code=202)
async def submit_run(
    request: Request, caller: Submitter, command: SubmitRun, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Bind a run to a workflow version and append RunSubmitted with the IR inline."""
    ctx = _ctx(request)
    check_input_size(ctx, command.input)

    async def submit() -> Answer:
        run_id = keyed_id("run", caller.tenant, idempotency_key) or new_id()
        event, position = await start_run(
            ctx,
            caller.tenant,
            _actor(caller),
            command,
            run_id=run_id,
            event_id=keyed_id("submit", caller.tenant, idempotency_key),
        )
        return _accepted(event, position, run_id=run_id)

    return await _idempotent(request, caller, idempotency_key, submit)


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    request: Request,
    caller: Submitter,
    run_id: str,
    command: Annotated[CancelRun, Body()] = CancelRun(),  # noqa: B008
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Ask the coordinator to cancel a run: nothing new is scheduled after it decides."""
    return await _to_run(
        request,
        caller,
        run_id,
        RunCancelRequested,
        RunCancelRequestedPayload(reason=command.reason),
        scope=f"cancel/{run_id}",
        idempotency_key=idempotency_key,
        run_id=run_id,
    )


@router.post("/runs/{run_id}/patches", status_code=202)
async def submit_patch(
    request: Request,
    caller: Patcher,
    run_id: str,
    command: SubmitPatch,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Propose an RFC 6902 patch of the run's current definition. The coordinator judges it
    against the run's version and state: PatchApplied (the run goes on with the new
    version) or PatchRejected with every reason; both show in the run's patches. The patch
    id is the appended event's id."""
    payload = PatchSubmittedPayload(
        patch=command.patch, reason=command.reason, base_version=command.base_version
    )
    return await _to_run(
        request,
        caller,
        run_id,
        PatchSubmitted,
        payload,
        scope=f"patch/{run_id}",
        idempotency_key=idempotency_key,
        admitted_as="patches",
        id_as="patch_id",
        run_id=run_id,
    )


@router.post("/runs/{run_id}/approvals/{node_id}", status_code=202)
async def decide_approval(  # noqa: PLR0917 - FastAPI passes what the route declares
    request: Request,
    caller: Approver,
    run_id: str,
    node_id: Annotated[str, Path(pattern=NODE_ID_PATTERN)],
    command: DecideApproval,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Submit a decision on a hitl node, or on an agent node that waits on the run's budget
    (approving it with ``budget``, the new bounds, raises it). The coordinator judges it: it
    is accepted only if the node waits for a decision and has none (ApprovalDecided, with
    BudgetRaised for a raise), and refused with a reason otherwise (ApprovalRefused); both
    show in the run's approvals and events."""
    payload = ApprovalSubmittedPayload(
        node_id=node_id,
        decision="approved" if command.decision == "approve" else "rejected",
        comment=command.comment,
        budget=command.budget,
    )
    return await _to_run(
        request,
        caller,
        run_id,
        ApprovalSubmitted,
        payload,
        scope=f"approval/{run_id}/{node_id}",
        idempotency_key=idempotency_key,
        admitted_as="approvals",
        run_id=run_id,
        node_id=node_id,
    )


@router.post("/runs/{run_id}/forks", status_code=202)
async def fork_run(
    request: Request,
    caller: Submitter,
    run_id: str,
    command: ForkRun,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Start a new run from RUN's history up to ``at``: what had finished there is reused
    (outputs included, never run again), what was in flight or waiting runs again in the
    fork, the rest follows as usual. RUN itself is not touched. The history is read from
    the log, the source of truth (not a read model that may lag), and travels in the fork's
    RunForked event."""
    ctx = _ctx(request)
    given_input = "input" in command.model_fields_set
    if given_input:
        check_input_size(ctx, command.input)

    async def fork() -> Answer:
        source = await registry.find_run(ctx.pool, caller.tenant, run_id)
        if source is None:
            raise NotFound(f"run {run_id!r} not found")
        logged = await read_run(ctx.kafka_bootstrap, run_id, since=source.created_at)
        point = until(logged, str(command.at))  # PositionOutsideRun -> 422 with the range
        # The source at that point, folded as the coordinator folds it: its input, and the
        # version the fork starts at (a patch before the point moved it on).
        state = fold(None, [entry.event for entry in point])
        if state is None:
            raise InvalidInput(f"run {run_id!r} has no start in its history up to {command.at}")
        given = command.input if given_input else state.input
        if not given_input:
            check_input_size(ctx, given)  # the limit may have been lowered since the source
        fork_id = keyed_id("fork", caller.tenant, idempotency_key) or new_id()
        at = point[-1].position.token()
        payload = RunForkedPayload(
            source_run_id=run_id,
            at=at,
            at_seq=len(point),
            input=given,
            history=[entry.event.model_dump(mode="json") for entry in point],
        )
        event = build_event(
            RunForked,
            payload,
            event_id=keyed_id("forked", caller.tenant, idempotency_key),
            aggregate_id=fork_id,
            causation_id=point[-1].event.event_id,
            actor=_actor(caller),
        )
        record = encode_record(
            event,
            advice=f"(it carries the source's {len(point)} events up to that point): the "
            "run's history is too long to fork at that point; fork at an earlier one",
        )
        await admit_action(ctx, caller.tenant, "forks")  # a valid fork: counted
        # Registered before the append, as a submitted run is: approvals, cancels, patches
        # and forks of the fork are authorised by it.
        await ctx.registry.record_run(fork_id, caller.tenant, state.workflow_id, state.version)
        position = await append_event(ctx, RUN_EVENTS, event, record=record)
        return _accepted(
            event, position, run_id=fork_id, forked_from=run_id, at=at, at_seq=len(point)
        )

    return await _idempotent(request, caller, idempotency_key, fork)
