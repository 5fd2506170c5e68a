"""The workflow definition as users write it (API.md, Workflow format).

Definitions are validated in two steps: the shape here (pydantic, unknown fields refused),
then the graph rules in ``schemas.compiler`` (ids unique, edges to known nodes, acyclic,
guards that fit the source node's type).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.budgets import Budget

NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
# A named rate limit of the tenant's (``limits.execution.ExecutionLimits.rate_limits``).
RATE_LIMIT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_CONCURRENCY_KEY_LIMIT = 1000

# Node types this release can run. A definition naming another type is refused at publish
# time; the coordinator still skips (never hangs on) a type it does not know.
KNOWN_NODE_TYPES: frozenset[str] = frozenset(
    {
        "noop",
        "transform",
        "http",
        "agent",
        "hitl",
        "condition",
        "wait_event",
        "map",
        "subworkflow",
    }
)

# Which guard values an edge may carry, by the type of the node it leaves.
EDGE_GUARDS: dict[str, frozenset[str]] = {
    "condition": frozenset({"true", "false"}),
    "hitl": frozenset({"approved", "rejected"}),
    "wait_event": frozenset({"received", "timeout"}),
}

# The agent tool that proposes a patch of the running workflow (DESIGN.md, Patching). An
# agent node is offered it only when its ``config.tools`` lists it.
PATCH_TOOL = "patch_workflow"
# Tools an agent node may name that are not node types of a tenant's own. A registered node
# type's name may be named too: the agent can then run one of its tasks (``node_types``).
AGENT_TOOLS: frozenset[str] = frozenset({PATCH_TOOL, "http"})

MAX_NODES = 500
MAX_EDGES = 2_000

# One attempt's time limit when a node sets no ``timeout_s``. The worker stops its handler
# at this limit; the coordinator, a little later, takes an attempt still unanswered for lost.
DEFAULT_TIMEOUT_S = 60.0
# The longest wait between two attempts when a retry policy sets no ``max_backoff_s``.
DEFAULT_MAX_BACKOFF_S = 300.0


class RetryPolicy(BaseModel):
    """How often a node is tried, and how long to wait between attempts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(1, ge=1, le=20, description="Attempts in all, the first included.")
    backoff_s: float = Field(
        0.5,
        ge=0,
        le=3600,
        description="Delay before the first retry; it doubles for each later one, with jitter.",
    )
    max_backoff_s: float | None = Field(
        None, ge=0, le=86_400, description="Cap on one delay (300 s if absent)."
    )


class ConcurrencyKey(BaseModel):
    """At most ``limit`` attempts, across every worker, run at once for one value of
    ``key`` in one tenant (``workers.fair`` says how, and why the tenant is the scope)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(
        min_length=1,
        max_length=1000,
        description="A template over the run context (`{{ input.customer }}`), rendered "
        "before the attempt starts; it may not read secrets.",
    )
    limit: int = Field(
        ge=1, le=MAX_CONCURRENCY_KEY_LIMIT, description="Attempts running at once per key."
    )


class NodeDef(BaseModel):
    """One node: what it does (``type`` and ``config``) and how it is retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NODE_ID_PATTERN, description="Unique within the workflow.")
    type: str = Field(min_length=1, max_length=64, description="Node type, e.g. `transform`.")
    config: dict[str, Any] = Field(default_factory=dict, description="Type-specific settings.")
    retry: RetryPolicy | None = Field(None, description="Retry policy; one attempt if absent.")
    timeout_s: float | None = Field(
        None, gt=0, le=86_400, description="Per-attempt time limit (60 s if absent)."
    )
    concurrency: ConcurrencyKey | None = Field(
        None, description="A bound on attempts running at once per value of a key."
    )
    rate_limit: str | None = Field(
        None,
        pattern=RATE_LIMIT_NAME_PATTERN,
        description="The tenant's named rate limit each attempt takes one call from.",
    )


class EdgeDef(BaseModel):
    """A dependency ``from`` → ``to``, optionally guarded by an outcome of ``from``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Bounded, not patterned: an id that names no node is told as such by the graph rules.
    from_: str = Field(alias="from", max_length=64, description="Upstream node id.")
    to: str = Field(max_length=64, description="Downstream node id.")
    when: str | None = Field(
        None, max_length=64, description="Guard: `true`/`false` or `approved`/`rejected`."
    )


class WorkflowDefinition(BaseModel):
    """A DAG of nodes and edges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: list[NodeDef] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[EdgeDef] = Field(default_factory=list, max_length=MAX_EDGES)
    budget: Budget | None = Field(
        None,
        description="What the run's agent nodes may spend together; a submission's own "
        "budget replaces it, and without either the tenant's default applies.",
    )

    def canonical(self) -> dict[str, Any]:
        """The JSON form whose hash is the version: aliases, no absent optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def may_patch(node_type: str, config: dict[str, Any]) -> bool:
    """Whether a node may propose patches of its run: an agent that lists the patch tool."""
    tools = config.get("tools")
    return node_type == "agent" and isinstance(tools, list) and PATCH_TOOL in tools
