"""The compiled form of a workflow: what the coordinator routes on.

The IR is derived from a definition by ``schemas.compiler.compile_workflow`` and is small
enough to travel inline in ``RunSubmitted``, so the coordinator never reads storage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.workflow import ConcurrencyKey, RetryPolicy


class IREdge(BaseModel):
    model_config = ConfigDict(frozen=True)

    node: str = Field(description="The node at the other end of the edge.")
    when: str | None = Field(None, description="The guard on the edge, if any.")


class IRNode(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = None
    concurrency: ConcurrencyKey | None = None
    rate_limit: str | None = None
    predecessors: list[IREdge] = Field(default_factory=list, description="Incoming edges.")
    successors: list[IREdge] = Field(default_factory=list, description="Outgoing edges.")
    join: Literal["all_live"] = Field(
        "all_live",
        description="Runs once every live predecessor has finished; skipped if all were skipped.",
    )


class IRNodeType(BaseModel):
    """A registered node type (``node_types``) as the run carries it: enough to route its
    nodes, to check a patch's configs and to offer it to an agent as a tool."""

    model_config = ConfigDict(frozen=True)

    config_schema: dict[str, Any] = Field(
        default_factory=dict, description="JSON Schema of a node's config; {} takes any."
    )
    output_schema: dict[str, Any] | None = None
    description: str = ""


class WorkflowIR(BaseModel):
    """Adjacency and join policy per node, plus a topological order."""

    model_config = ConfigDict(frozen=True)

    version: str = Field(description="Hash of the definition this IR was compiled from.")
    nodes: dict[str, IRNode]
    roots: list[str] = Field(description="Nodes without predecessors, in definition order.")
    order: list[str] = Field(description="A topological order of every node.")
    node_types: dict[str, IRNodeType] = Field(
        default_factory=dict,
        description="The registered (not built-in) types the workflow uses, as nodes or as "
        "agents' tools, as they were when it was published: the coordinator routes these "
        "nodes to their workers, and a patch may use them.",
    )
