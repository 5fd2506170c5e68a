"""``nodeTypes``: the node types a caller's workflows may use, for a builder's palette.

The built-in types, and the types the caller's tenant registered (``node_types``), each with
its schemas and the workers serving it now: a registered type is live while one of its workers
beat within ``node_types.LIVE_WITHIN_S``; the built-in workers beat as the engine's (tenant
'').
"""

from __future__ import annotations

import asyncpg
import strawberry
from strawberry.scalars import JSON

from node_types import BUILT_IN_TYPES, ENGINE, NodeTypeRegistry
from schemas.topics import TASK_TYPES

# A tenant's registered types as listed; with the built-in ones, what the query's cost counts.
MAX_LISTED = 200
LISTED_NODE_TYPES = MAX_LISTED + len(BUILT_IN_TYPES)

BUILT_IN_DESCRIPTIONS = {
    "noop": "Does nothing; outputs {}.",
    "transform": "Renders a template over the run context into a value.",
    "condition": "Judges an expression; its edges are taken by `when: true` or `false`.",
    "http": "Makes an HTTP request through the SSRF guard and the tenant's allowlist.",
    "agent": "Asks a model, with tools, until it finishes; may patch its run.",
    "hitl": "Waits for a person's decision; its edges are `approved` or `rejected`.",
    "wait_event": "Waits for an outside event (name, key); its edges are `received` or `timeout`.",
    "map": "Runs one inner node per item of a list, at most `max_parallel` at once.",
    "subworkflow": "Starts a child run of another workflow and outputs its output.",
}


@strawberry.type(description="A node type: built in, or registered by the tenant's workers.")
class NodeType:
    name: str
    built_in: bool
    description: str
    config_schema: JSON | None = strawberry.field(
        description="JSON Schema of a node's config; null for a built-in type "
        "(the README describes its config)."
    )
    output_schema: JSON | None
    live_workers: list[str] = strawberry.field(
        description="Workers that beat within the last seconds: empty when none serves it "
        "(and for a type the coordinator itself runs, `map`)."
    )
    # A built-in type with no worker topic: the coordinator decides its nodes (map).
    coordinated: strawberry.Private[bool] = False

    @strawberry.field(
        description="Whether the type is served now: some worker beat, or the coordinator "
        "runs it itself."
    )
    def live(self) -> bool:
        return self.coordinated or bool(self.live_workers)


async def node_types(pool: asyncpg.Pool, tenant: str) -> list[NodeType]:
    registry = NodeTypeRegistry(pool)
    registered = await registry.types(tenant, limit=MAX_LISTED)
    workers = await registry.live([tenant, ENGINE])
    types = [
        NodeType(
            name=name,
            built_in=True,
            description=BUILT_IN_DESCRIPTIONS.get(name, ""),
            config_schema=None,
            output_schema=None,
            live_workers=workers.get(name, []),
            coordinated=name not in TASK_TYPES,
        )
        for name in sorted(BUILT_IN_TYPES)
    ]
    types += [
        NodeType(
            name=t.name,
            built_in=False,
            description=t.description,
            config_schema=t.config_schema,
            output_schema=t.output_schema,
            live_workers=workers.get(t.name, []),
        )
        for t in registered
    ]
    return types
