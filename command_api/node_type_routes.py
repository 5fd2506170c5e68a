"""``/v1/node-types``: the node types a tenant's own workers serve (``node_types``).

``PUT /v1/node-types/{name}`` ``{"config_schema", "output_schema", "description"}`` registers
a type, or replaces its schemas: a worker of the SDK does it when it starts. The name's worker
topic (``aob.tasks.<name>``) is made, the registration appended to the log as
``node_type.registered``, then stored here so that the next publish checks configs by it.
``GET /v1/node-types`` lists the tenant's types. Both need the ``publish`` scope: a type is
part of what a tenant's workflows may be made of.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from auth import Principal
from auth.scopes import PUBLISH
from command_api.context import CommandContext, require
from command_api.door import DoorRoute
from command_api.errors import Conflict, InvalidInput
from command_api.routes import _actor as actor_of
from infra.kafka_admin import ensure_topics
from node_types import (
    BUILT_IN_TYPES,
    NODE_TYPE_NAME_PATTERN,
    NodeType,
    NodeTypeSpec,
    NodeTypeTaken,
)
from run_submission import append_event
from schemas.envelope import build_event
from schemas.events import NodeTypeRegistered, NodeTypeRegisteredPayload
from schemas.node_type_configs import schema_reasons
from schemas.topics import WORKFLOW_EVENTS, task_topic, task_topic_spec

router = APIRouter(prefix="/v1", route_class=DoorRoute)

Publisher = Annotated[Principal, Depends(require(PUBLISH))]
TypeName = Annotated[
    str,
    Path(
        pattern=NODE_TYPE_NAME_PATTERN,
        description="Lower-case letters, digits, '_' and '-', starting with a letter; "
        "at most 48 characters.",
    ),
]
MAX_DESCRIPTION_CHARS = 2_000


class RegisterNodeType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_schema: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON Schema (draft 2020-12) of a node's config; {} takes any config.",
    )
    output_schema: dict[str, Any] | None = Field(
        None, description="JSON Schema of the node's output, shown to users and agents."
    )
    description: str = Field("", max_length=MAX_DESCRIPTION_CHARS)


def _answer(t: NodeType, **more: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "tenant": t.tenant,
        "topic": task_topic(t.name),
        "config_schema": t.config_schema,
        "output_schema": t.output_schema,
        "description": t.description,
        "registered_at": t.registered_at.isoformat() if t.registered_at else None,
        **more,
    }


@router.put("/node-types/{name}")
async def register_node_type(
    request: Request, name: TypeName, command: RegisterNodeType, caller: Publisher
) -> dict[str, Any]:
    ctx: CommandContext = request.app.state.commands
    reasons = [f"config_schema: {r}" for r in schema_reasons(command.config_schema)]
    if command.output_schema is not None:
        reasons += [f"output_schema: {r}" for r in schema_reasons(command.output_schema)]
    if reasons:
        raise InvalidInput(reasons[0], errors=reasons)
    spec = NodeTypeSpec(name, command.config_schema, command.output_schema, command.description)
    owner = await ctx.node_types.owner(name)
    if owner is not None and owner != caller.tenant:
        raise Conflict(f"node type {name!r} is registered by another tenant: choose another name")
    if name in BUILT_IN_TYPES:
        raise Conflict(f"{name!r} is a built-in node type: choose another name")
    # The topic first, then the event, then the row: a type the registry has can always be
    # routed, and is always in the log. A crash in between is mended by registering again.
    await ensure_topics(ctx.kafka_bootstrap, [task_topic_spec(name, ctx.topic_partitions)])
    event = build_event(
        NodeTypeRegistered,
        NodeTypeRegisteredPayload(
            name=name,
            config_schema=command.config_schema,
            output_schema=command.output_schema,
            description=command.description,
        ),
        aggregate_id=f"node-type:{name}",
        actor=actor_of(caller),
    )
    position = await append_event(ctx, WORKFLOW_EVENTS, event)
    try:  # the store's own statement holds against two tenants racing for a new name
        stored = await ctx.node_types.register(caller.tenant, spec)
    except NodeTypeTaken as e:
        raise Conflict(f"{e}: choose another name") from None
    return _answer(stored, event_id=event.event_id, position=position)


@router.get("/node-types")
async def list_node_types(request: Request, caller: Publisher) -> dict[str, Any]:
    ctx: CommandContext = request.app.state.commands
    return {"node_types": [_answer(t) for t in await ctx.node_types.types(caller.tenant)]}
