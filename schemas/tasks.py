"""Work orders on ``aob.tasks.<type>``: what a worker needs to run one attempt of one node.

A task carries everything: config, the template context and where to report. Workers hold
no state of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.agent_tools import ToolCallOrigin, ToolCallRecord
from schemas.budgets import AgentRunLimits
from schemas.subworkflow_node import SubworkflowCall
from schemas.workflow import ConcurrencyKey

TASK_WIRE_NAME = "task.node"
# The largest task value the coordinator sends. A task carries the run input and the inline
# outputs of every node finished before it, so a join of many inline outputs can be large;
# one that would be larger fails its run instead of being sent.
MAX_TASK_BYTES = 1_000_000


class NodeContext(BaseModel):
    """One upstream node as templates see it: ``nodes.<id>.output`` and ``.status``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str
    output: Any = None
    output_ref: str | None = Field(None, description="Set when the output is not inline.")


class NodeTask(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str = TASK_WIRE_NAME
    task_id: str = Field(description="The NodeScheduled event id: stable across replays.")
    run_id: str
    tenant: str
    node_id: str
    node_type: str
    attempt: int = Field(ge=1)
    config: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = None
    input: Any = Field(None, description="The run input.")
    nodes: dict[str, NodeContext] = Field(
        default_factory=dict, description="Finished upstream nodes, by id."
    )
    scheduled_at: datetime | None = Field(
        None, description="When the coordinator scheduled it: no report of it is older."
    )
    version: str | None = Field(None, description="The run's version when it was scheduled.")
    concurrency: ConcurrencyKey | None = Field(
        None,
        description="The node's concurrency key: the worker renders it and holds a "
        "lease on one of its slots while the attempt runs.",
    )
    rate_limit: str | None = Field(
        None, description="The tenant's named rate limit the attempt takes one call from."
    )
    definition: dict[str, Any] | None = Field(
        None,
        description="The run's definition at that version: given only to nodes that may "
        "patch it (agents offered `patch_workflow`), which write their patches against it.",
    )
    index: int | None = Field(
        None,
        ge=0,
        description="Map nodes: which item of the list this task runs (`index` in its "
        "template context); absent for a node's own task. Every report names it (`item`).",
    )
    item: Any = Field(None, description="Map nodes: the item's value (`item` in templates).")
    agent_limits: AgentRunLimits | None = Field(
        None,
        description="Agent nodes: the run's budget as it stands (the worker asks before "
        "each model call when it has one), the cap on `max_tokens`, the models allowed and "
        "the tenant's prices.",
    )
    tool_types: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Agent nodes: the registered node types their `tools` name, as "
        "`{name: {config_schema, output_schema, description}}` (the run's `ir.node_types`).",
    )
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list,
        description="Agent nodes: the tool calls earlier attempts of the node finished; "
        "the worker reuses their results instead of calling again.",
    )
    subworkflow: SubworkflowCall | None = Field(
        None,
        description="Subworkflow nodes: the run's depth and the version of the called "
        "workflow pinned at the run's submission.",
    )
    tool_call: ToolCallOrigin | None = Field(
        None,
        description="Set when the task is an agent's tool call, not a node of the run: "
        "`config` is the call's arguments, and the worker answers with run.tool_called.",
    )

    @property
    def idempotency_key(self) -> str:
        """Passed to side effects: the same for every delivery of this attempt (of a tool
        call: for every attempt of the agent that makes the same call)."""
        if self.tool_call is not None:
            return f"{self.run_id}/{self.node_id}/{self.tool_call.call_id}"
        if self.index is not None:
            return f"{self.run_id}/{self.node_id}/{self.index}/{self.attempt}"
        return f"{self.run_id}/{self.node_id}/{self.attempt}"
