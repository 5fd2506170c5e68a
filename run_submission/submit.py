"""``start_run``: bind a run to its version, admit it, register it, append its run.submitted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from command_api.admission import admit_run
from command_api.budgets import run_limits
from command_api.errors import InvalidInput, NotFound, PayloadTooLarge
from command_api.metrics import EVENTS_APPENDED
from infra.settings import get_settings
from run_submission.context import SubmissionContext
from schemas import RunSubmitted, SubmitRun, canonical_json
from schemas.codec import Headers, encode_event
from schemas.envelope import Actor, Event, build_event
from schemas.events import MAX_EVENT_BYTES, RunParent, RunSubmittedPayload
from schemas.subworkflow_node import SUBWORKFLOW
from schemas.topics import RUN_EVENTS
from schemas.workflow_ids import workflow_id_for

Record = tuple[bytes, bytes, Headers]


@dataclass(frozen=True)
class ParentLink:
    """Where a child run comes from: the parent run's subworkflow node and attempt, and the
    depth the child is at (its parent's plus one)."""

    run_id: str
    node_id: str
    attempt: int
    depth: int


def check_input_size(ctx: SubmissionContext, run_input: Any) -> None:
    """413 for a run input (submitted, or given to a fork) over the configured limit."""
    size = len(canonical_json(run_input))
    if size > ctx.settings.max_input_bytes:
        raise PayloadTooLarge(
            f"the run input is {size} bytes; the limit is {ctx.settings.max_input_bytes}"
        )


def encode_record(event: Event, advice: str | None = None) -> Record:
    """The Kafka record of ``event``, encoded once: 413 if it is over MAX_EVENT_BYTES
    (``advice`` says what to do); 422 if what the caller sent cannot be encoded. The door
    refuses such values first; this keeps anything it misses from becoming a 503."""
    try:
        record = encode_event(event)
    except (ValueError, RecursionError) as e:  # a lone surrogate; nested too deep to serialise
        raise InvalidInput(f"the {event.type} event cannot be encoded: {e}", errors=[str(e)]) from e
    size = len(record[1])
    if size > MAX_EVENT_BYTES:
        advice = advice or (
            "(a run carries its workflow's definition and compiled form): "
            "make the definition or the input smaller"
        )
        raise PayloadTooLarge(
            f"the {event.type} event would be {size} bytes, and an event may have at most "
            f"{MAX_EVENT_BYTES} {advice}"
        )
    return record


async def append_event(
    ctx: SubmissionContext,
    topic: str,
    event: Event,
    advice: str | None = None,
    record: Record | None = None,
) -> str:
    """Append ``event`` (its ``record`` if already made: ``encode_record``) and return its
    position."""
    key, value, headers = record or encode_record(event, advice)
    position = await ctx.bus.send(topic, key, value, headers)
    EVENTS_APPENDED.labels(event.type).inc()
    return position.token()


async def start_run(
    ctx: SubmissionContext,
    tenant: str,
    actor: Actor,
    command: SubmitRun,
    *,
    run_id: str,
    event_id: str | None = None,
    parent: ParentLink | None = None,
) -> tuple[Event, str]:
    """Bind a run of ``tenant``'s workflow to its version, admit it, register it and append
    its RunSubmitted: (the event, its position). The one path every run start takes (``POST
    /v1/runs``, a webhook, a schedule's firing, a subworkflow node), so each is checked and
    counted alike. Given ids (derived from an Idempotency-Key, a delivery, a firing, a
    node's attempt) make a retry re-append the same event, dropped as a duplicate
    downstream, instead of starting a second run. A child run (``parent``) deeper than
    ``AOB_MAX_SUBWORKFLOW_DEPTH`` is refused (422) before anything is looked up."""
    if parent is not None:
        check_depth(parent)
    # A UUID is taken as an id, and looked up among the tenant's workflows only: another
    # tenant's id answers as any unknown workflow does, so it reveals nothing.
    workflow_id = workflow_id_for(tenant, command.workflow_id)
    version = await ctx.registry.find_version(tenant, workflow_id, command.version)
    if version is None:
        if command.version and await ctx.registry.find_version(tenant, workflow_id, None):
            raise NotFound(f"workflow {command.workflow_id!r} has no version {command.version!r}")
        raise NotFound(
            f"workflow {command.workflow_id!r} not found; publish it with POST /v1/workflows"
        )
    compiled = await ctx.load_version(version.definition_ref, version.ir_ref, version.version)
    # The budget and agent limits the run is bound to, as the tenant's are now.
    agents = (await ctx.tenant_limits(tenant)).agents
    agent_limits = run_limits(compiled.definition, command.budget, agents)
    payload = RunSubmittedPayload(
        workflow_id=workflow_id,
        workflow_name=version.name,
        version=version.version,
        input=command.input,
        definition=compiled.definition,
        ir=compiled.ir,
        definition_ref=version.definition_ref,
        ir_ref=version.ir_ref,
        agent_limits=agent_limits,
        parent=(
            RunParent(run_id=parent.run_id, node_id=parent.node_id, attempt=parent.attempt)
            if parent is not None
            else None
        ),
        depth=parent.depth if parent is not None else 0,
        subworkflows=await pinned_subworkflows(ctx, tenant, compiled.definition),
    )
    event = build_event(RunSubmitted, payload, event_id=event_id, aggregate_id=run_id, actor=actor)
    record = encode_record(event)
    # Counted once the run is known to be valid (its version gives its cost tier), and
    # before anything is written.
    await admit_run(ctx, tenant, compiled.definition)
    # Registered before the append: a run the log has is always one we can authorise.
    await ctx.registry.record_run(run_id, tenant, workflow_id, version.version)
    return event, await append_event(ctx, RUN_EVENTS, event, record=record)


def check_depth(parent: ParentLink) -> None:
    """422 for a child run deeper than ``AOB_MAX_SUBWORKFLOW_DEPTH`` allows."""
    limit = get_settings().max_subworkflow_depth
    if parent.depth > limit:
        raise InvalidInput(
            f"node {parent.node_id!r} of run {parent.run_id} would start a run at subworkflow "
            f"depth {parent.depth}, and runs nest at most {limit} deep "
            "(AOB_MAX_SUBWORKFLOW_DEPTH): a workflow that calls itself stops here",
            limit={"name": "subworkflow_depth", "max": limit},
        )


async def pinned_subworkflows(
    ctx: SubmissionContext, tenant: str, definition: dict[str, Any]
) -> dict[str, str]:
    """Workflow id -> its latest version now, for each workflow that a subworkflow node of
    ``definition`` calls without naming a version: what the run's children are bound to.
    A workflow not found is left out (its node then fails when it runs, with the reason)."""
    pinned: dict[str, str] = {}
    for node in definition.get("nodes") or []:
        config = node.get("config") or {}
        name = config.get("workflow")
        if node.get("type") != SUBWORKFLOW or config.get("version") or not isinstance(name, str):
            continue
        workflow_id = workflow_id_for(tenant, name)
        if workflow_id in pinned:
            continue
        found = await ctx.registry.find_version(tenant, workflow_id, None)
        if found is not None:
            pinned[workflow_id] = found.version
    return pinned
