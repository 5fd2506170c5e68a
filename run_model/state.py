"""A run's state as the coordinator sees it: facts folded from the run's events.

Every field is derived from events (``run_model.evolve``); nothing is a bare counter.
"Node X was scheduled in attempt 2" is kept as the set of attempts seen, so a duplicate of the
same fact changes nothing. The model is JSON-serialisable: it is what the faust table holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.agent_tools import ToolCallRecord
from schemas.budgets import AgentRunLimits, Budget
from schemas.events import RunParent, Spend
from schemas.ir import IRNode, WorkflowIR
from schemas.ir_definition import definition_from_ir


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


RUN_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class NodeStatus(StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


NODE_TERMINAL = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED})
NODE_IN_FLIGHT = frozenset({NodeStatus.SCHEDULED, NodeStatus.RUNNING})


def run_status(status: RunStatus, nodes: Iterable[NodeStatus]) -> RunStatus:
    """The status of a run that is RUNNING or WAITING, from its nodes' statuses: it WAITS
    when a node waits for a person and nothing else is in flight. A run in any other status
    (not started, finished) keeps it. The coordinator's state (``RunState.refresh_status``)
    and the read model (``projections.runs``) both follow this one rule."""
    if status not in (RunStatus.RUNNING, RunStatus.WAITING):
        return status
    statuses = set(nodes)
    waiting = NodeStatus.WAITING in statuses and not statuses & NODE_IN_FLIGHT
    return RunStatus.WAITING if waiting else RunStatus.RUNNING


class Approval(BaseModel):
    """A request for a person's decision, and the decision: a hitl node's (ApprovalRequested,
    kind ``decision``), or an agent node's that waits on the run's budget (BudgetExceeded,
    kind ``budget``: approving it raises the budget)."""

    model_config = ConfigDict(extra="ignore")

    attempt: int
    kind: Literal["decision", "budget"] = "decision"
    reason: str | None = Field(None, description="Kind `budget`: what the node would pass.")
    due_at: datetime | None = Field(None, description="When the default outcome applies.")
    default_outcome: str | None = None
    decision: str | None = Field(None, description="`approved` or `rejected` once decided.")
    decided_by: str | None = None


class EventWait(BaseModel):
    """What a wait_event node waits for (EventAwaited), in its attempt."""

    model_config = ConfigDict(extra="ignore")

    attempt: int
    name: str
    key: str
    due_at: datetime | None = Field(None, description="When it takes its `timeout` edge.")


class ChildRun(BaseModel):
    """The child run a subworkflow node's attempt started (SubworkflowStarted)."""

    model_config = ConfigDict(extra="ignore")

    attempt: int
    run_id: str


class NodeState(BaseModel):
    """One node of one run. Mutated only by ``evolve``, on a shallow copy: its lists, dicts
    and models are replaced, never changed in place (an older state shares them)."""

    model_config = ConfigDict(extra="ignore")

    status: NodeStatus = NodeStatus.PENDING
    scheduled: list[int] = Field(default_factory=list, description="Attempts scheduled, sorted.")
    started: list[int] = Field(default_factory=list, description="Attempts a worker picked up.")
    started_at: dict[int, datetime] = Field(
        default_factory=dict, description="Attempt -> when a worker first reported it started."
    )
    retry_due: dict[int, datetime] = Field(
        default_factory=dict, description="Attempt -> when it is due (a planned retry)."
    )
    failures: dict[int, str] = Field(
        default_factory=dict, description="Attempt -> error (the first report of it)."
    )
    succeeded_attempt: int | None = None
    output: Any = None
    output_inline: bool = False
    output_ref: str | None = None
    error: str | None = Field(None, description="The error that failed the node for good.")
    skip_reason: str | None = None
    approval: Approval | None = Field(
        None, description="hitl nodes, and agent nodes waiting on the budget: the request."
    )
    awaiting: EventWait | None = Field(None, description="wait_event nodes: what they wait for.")
    child: ChildRun | None = Field(
        None, description="subworkflow nodes: the child run their latest start began."
    )
    outcome: str | None = Field(
        None, description="The outcome its edges read, when its output does not say it."
    )
    map_items: int | None = Field(
        None, description="Map nodes: how many items its list held (MapStarted), once read."
    )
    items: dict[int, NodeState] = Field(
        default_factory=dict,
        description="Map nodes: index -> the item's own facts (attempts, output, error), for "
        "every item scheduled so far; an item is a node of its own in all but name "
        "(``run_model.mapping``).",
    )
    items_done: int = Field(
        0, description="Map nodes: how many of ``items`` have finished (kept with them)."
    )
    items_failed: list[int] = Field(
        default_factory=list, description="Map nodes: the items that failed for good, in order."
    )
    items_next: int = Field(
        0,
        description="Map nodes: no index below it is left to schedule (a cursor, so that "
        "starting the next items does not scan them all).",
    )
    calls: dict[int, dict[int, Spend]] = Field(
        default_factory=dict,
        description="Agent nodes: attempt -> turn -> what that model call spent, from its "
        "ModelCalled (the first report of each turn counts; failed attempts too).",
    )
    tool_calls: dict[str, ToolCallRecord] = Field(
        default_factory=dict,
        description="Agent nodes: call id -> the tool call, from its ToolCalled (the first "
        "report counts, but a success replaces a failure: a later attempt made it again).",
    )

    @property
    def attempt(self) -> int:
        """The latest attempt scheduled (0 before the first)."""
        return self.scheduled[-1] if self.scheduled else 0

    @property
    def terminal(self) -> bool:
        return self.status in NODE_TERMINAL


class RunState(BaseModel):
    """One run: its compiled workflow, its input, and the facts about each node."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    tenant: str
    workflow_id: str
    version: str
    status: RunStatus = RunStatus.PENDING
    ir: WorkflowIR
    definition: dict[str, Any] | None = Field(
        None,
        description="The canonical definition of ``version``: what patches are written "
        "against (absent in states stored by a release before patching: see "
        "``current_definition``).",
    )
    input: Any = None
    nodes: dict[str, NodeState]
    applied: set[str] = Field(
        default_factory=set,
        description="Ids of the events folded in: a duplicate, or the echo of our own "
        "decision coming back through the log, is recognised and changes nothing.",
    )
    patches: list[str] = Field(
        default_factory=list, description="Ids of the patches applied, in order."
    )
    agent_spawns: list[str] = Field(
        default_factory=list,
        description="Agent nodes added on agents' proposals (the spawn limit counts them).",
    )
    proposals: dict[str, str] = Field(
        default_factory=dict,
        description="Patch id -> the agent node that proposed it, from its PatchSubmitted "
        "until its verdict is folded in: what tells the fold of a PatchApplied whose nodes "
        "they are (the applied event itself names only the coordinator).",
    )
    authored_by: dict[str, str] = Field(
        default_factory=dict,
        description="Node -> the agent node whose applied patch last added or changed it. "
        "An agent's patch may change only the nodes it wrote (``run_model.agent_policy``); "
        "a person's change of a node makes it the person's again.",
    )
    parent: RunParent | None = Field(
        None, description="The run and subworkflow node that started this run, if any."
    )
    depth: int = Field(0, description="How deep in subworkflows the run is (root: 0).")
    subworkflows: dict[str, str] = Field(
        default_factory=dict,
        description="Workflow id -> the version pinned at submission for subworkflow nodes "
        "that name none (RunSubmitted).",
    )
    cancel_requested: bool = False
    reason: str | None = Field(None, description="Why the run failed or was cancelled.")
    agent_limits: AgentRunLimits | None = Field(
        None,
        description="The budget and agent limits the run was submitted with (RunSubmitted), "
        "the budget as raised since (BudgetRaised); absent for runs submitted before them.",
    )

    @property
    def finished(self) -> bool:
        return self.status in RUN_FINISHED

    @property
    def budget(self) -> Budget | None:
        return self.agent_limits.budget if self.agent_limits is not None else None

    def refresh_status(self) -> None:
        """RUNNING or WAITING, from the nodes (``run_status``)."""
        self.status = run_status(self.status, (n.status for n in self.nodes.values()))

    def current_definition(self) -> dict[str, Any]:
        """The definition the run is at, rebuilt from the IR if the state predates it."""
        return self.definition if self.definition is not None else definition_from_ir(self.ir)

    def node_def(self, node_id: str) -> IRNode:
        return self.ir.nodes[node_id]

    def sinks(self) -> list[str]:
        """Nodes without successors, in topological order."""
        return [n for n in self.ir.order if not self.ir.nodes[n].successors]
