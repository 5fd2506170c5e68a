"""The rows of the run tables, one dataclass per table: the single list of its columns.

A field is a column of the same name; its annotation gives the column's kind (``read_model.
tables``): text, integer, boolean, timestamp, or JSON for anything else. The projector folds
events into these rows (``projections.runs``); the SQL that reads and writes them, in the
projector and in the query API, is derived from the fields, never written out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class RunRow:
    run_id: str
    tenant: str
    workflow_id: str
    workflow_name: str
    version: str
    status: str
    created_at: datetime
    updated_at: datetime
    input: Any = None
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    event_count: int = 0
    projection_error: str | None = None  # why an event of the run is not in the read model
    budget: Any = None  # the run's budget as it stands: {tokens, usd, on_exceed}, or none
    # A child run of a subworkflow node: its parent run and that node; its depth (root: 0).
    parent_run_id: str | None = None
    parent_node_id: str | None = None
    depth: int = 0


@dataclass
class NodeRow:
    run_id: str
    node_id: str
    node_type: str
    status: str = "PENDING"
    attempts: int = 0
    successes: int = 0
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: Any = None
    output_ref: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    waiting_reason: str | None = None  # why a SCHEDULED node has not started (run.node_queued)
    cost_usd: float = 0.0  # the priced model calls' cost in US dollars
    tool_call_count: int = 0  # distinct tool calls of the node (run.tool_called), all attempts
    # Each call, in log order: {call_id, tool, attempt, ok, error, duration_ms, result_ref,
    # arguments_sha256, at}; the result itself stays in the event (or the CAS).
    tool_calls: Any = None
    # Map nodes: "<index>" -> {status, attempts, output, output_ref, error, started_at,
    # finished_at} of each item scheduled so far (``projections.map_items``); None otherwise.
    items: Any = None
    child_run_id: str | None = None  # subworkflow nodes: the child run of the latest start


@dataclass
class ApprovalRow:
    run_id: str
    node_id: str
    tenant: str
    attempt: int
    status: str  # WAITING APPROVED REJECTED CANCELLED
    prompt: str
    requested_at: datetime
    due_at: datetime | None = None
    default_outcome: str | None = None
    decision: str | None = None
    comment: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    timed_out: bool = False
    refusals: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "DECISION"  # DECISION (a hitl node) or BUDGET (an agent over the run's budget)
    reason: str | None = None  # BUDGET: the budget the node's next call would pass


@dataclass(frozen=True)
class ForkRow:
    """Where a fork came from (the ``forked_*`` columns of its ``runs`` row)."""

    run_id: str
    forked_from: str
    forked_at: str  # log position token of the source's last event included
    forked_at_seq: int


@dataclass
class VersionRow:
    """A row of ``run_versions``: one version a run went through."""

    run_id: str
    seq: int  # 0: the version the run was submitted with; then 1, 2, … per applied patch
    version: str
    definition: dict[str, Any]
    definition_ref: str
    ir_ref: str
    created_at: datetime
    patch_id: str | None = None
    from_version: str | None = None
