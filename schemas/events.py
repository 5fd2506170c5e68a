"""Every event type, with its stable wire name. Past tense: these are facts.

Workflow events are keyed by workflow id on ``aob.workflows.events``; run events by run id on
``aob.runs.events``, so one run's whole history is one ordered partition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from schemas.budgets import AgentRunLimits, Budget, BudgetRaise
from schemas.envelope import Event, Payload, event, event_class, upcast, upcaster
from schemas.errors import UnknownEventType
from schemas.ir import WorkflowIR
from schemas.ir_definition import definition_from_ir

# Node outputs up to this size travel inline in NodeSucceeded (and so in the coordinator's
# state and in tasks); larger ones only by CAS reference. Every output is in the CAS.
INLINE_OUTPUT_MAX_BYTES = 16 * 1024
# The largest event value AOB appends: under Kafka's default `message.max.bytes` (1 MiB),
# with room for the key and headers. Definitions and IRs travel inline in run.submitted and
# run.patch_applied, so they are what can reach it.
MAX_EVENT_BYTES = 1_000_000
# The largest record (key, value and headers, as the producer estimates it) a producer of
# AOB sends: the Kafka clients' default `max.request.size`, 12 bytes under the broker's
# default `message.max.bytes`. faust's producer defaults to 1,000,000, which an event of
# MAX_EVENT_BYTES would overrun with its key and headers: the coordinator sets this instead.
MAX_RECORD_BYTES = 1_048_576
# A map node's items (``run_model.mapping``) are told by the node's own events, each naming
# the item's index in ``item``; a node's own events leave it out (None).
ITEM_FIELD: Any = Field(
    None, ge=0, description="Map nodes: the index of the item this is about; absent otherwise."
)
# When an outcome's (NodeSucceeded, NodeFailed) attempt started.
STARTED_AT_FIELD: Any = Field(
    None,
    description="When the attempt started. A worker tells it in every outcome; for a quick "
    "attempt it is the only telling, as no run.node_started is sent (workers.start_report). "
    "None in an outcome of no attempt (a task that could not start) and in events of earlier "
    "releases.",
)


# --- workflows -------------------------------------------------------------------------


class WorkflowPublishedPayload(Payload):
    workflow_id: str = Field(description="Stable id of the workflow (per tenant and name).")
    name: str = Field(description="The name it was published under.")
    version: str = Field(description="sha256 of the canonical definition.")
    definition: dict[str, Any] = Field(description="The canonical definition.")
    definition_ref: str = Field(description="CAS reference of the definition.")
    ir_ref: str = Field(description="CAS reference of the compiled IR.")


@event("workflow.published")
class WorkflowPublished(Event):
    payload: WorkflowPublishedPayload


class NodeTypeRegisteredPayload(Payload):
    name: str = Field(description="The type's name; its tasks go to `aob.tasks.<name>`.")
    config_schema: dict[str, Any] = Field(description="JSON Schema of a node's config.")
    output_schema: dict[str, Any] | None = Field(None, description="JSON Schema of its output.")
    description: str = ""


@event("node_type.registered")
class NodeTypeRegistered(Event):
    """A tenant's worker (or a person) registered a node type, or replaced its schemas. Keyed
    ``node-type:<name>`` on the workflow events topic."""

    payload: NodeTypeRegisteredPayload


# --- schedules -------------------------------------------------------------------------
# Keyed by schedule id on the workflow events topic: a schedule is a workflow's, as its
# versions and node types are, and its firings are few beside the runs they start.


class ScheduleCreatedPayload(Payload):
    schedule_id: str
    workflow: str = Field(description="The workflow (id or name) each firing starts.")
    cron: str | None = Field(None, description="A five-field cron expression, in `timezone`.")
    every_s: int | None = Field(None, description="Or an interval, from the Unix epoch.")
    timezone: str = Field("UTC", description="The IANA time zone the cron expression reads.")
    overlap: Literal["skip", "allow"] = Field(
        "allow",
        description="`skip`: a firing while the schedule's previous run is unfinished starts "
        "nothing and is recorded as skipped.",
    )
    input: Any = Field(None, description="The input of every run it starts.")


@event("schedule.created")
class ScheduleCreated(Event):
    """A schedule was made; its coordinator clock fires it from now on."""

    payload: ScheduleCreatedPayload


class ScheduleChangedPayload(Payload):
    schedule_id: str


@event("schedule.paused")
class SchedulePaused(Event):
    """The schedule fires no more until it is resumed; moments in between are not caught up."""

    payload: ScheduleChangedPayload


@event("schedule.resumed")
class ScheduleResumed(Event):
    payload: ScheduleChangedPayload


@event("schedule.deleted")
class ScheduleDeleted(Event):
    payload: ScheduleChangedPayload


class ScheduleFiredPayload(Payload):
    schedule_id: str
    due_at: datetime = Field(description="The moment fired (the event is at or after it).")
    run_id: str = Field(description="The run it starts: derived from (schedule, due_at).")


@event("schedule.fired")
class ScheduleFired(Event):
    """A schedule's moment came and its run was submitted. Its id, and its run's, derive
    from (schedule id, due_at): a moment fired again after a restart is the same fact."""

    payload: ScheduleFiredPayload


class ScheduleSkippedPayload(Payload):
    schedule_id: str
    due_at: datetime = Field(description="The moment that started nothing (the last, if many).")
    reason: str = Field(description="Why, in words: an unfinished run, missed moments, a limit.")
    count: int = Field(1, ge=1, description="How many moments this stands for.")
    first_due_at: datetime | None = Field(None, description="The first of them, if many.")


@event("schedule.skipped")
class ScheduleSkipped(Event):
    """Moments of a schedule that started no run: its previous run was unfinished (overlap
    `skip`), they were missed beyond the catch-up while no clock ran, or the run was refused
    (its workflow gone, a limit)."""

    payload: ScheduleSkippedPayload


# --- runs ------------------------------------------------------------------------------


class RunParent(Payload):
    """The subworkflow node (and its attempt) of the run that started a child run."""

    run_id: str
    node_id: str
    attempt: int = Field(ge=1)


class RunSubmittedPayload(Payload):
    workflow_id: str
    workflow_name: str
    version: str = Field(description="The workflow version the run is bound to.")
    input: Any = Field(None, description="The run input, as submitted.")
    definition: dict[str, Any] = Field(
        description="The canonical definition of that version, inline: patches are written "
        "against it, and the coordinator reads no storage."
    )
    ir: WorkflowIR = Field(
        description="The compiled workflow, inline: the coordinator reads no storage."
    )
    definition_ref: str
    ir_ref: str
    agent_limits: AgentRunLimits | None = Field(
        None,
        description="The run's budget and the tenant's agent limits when it was submitted "
        "(absent in runs submitted before budgets: no bound).",
    )
    parent: RunParent | None = Field(
        None, description="Set when a subworkflow node of another run started this one."
    )
    depth: int = Field(
        0, ge=0, description="How deep in subworkflows the run is: 0 unless it has a parent."
    )
    subworkflows: dict[str, str] = Field(
        default_factory=dict,
        description="Workflow id -> version: the versions the run's subworkflow nodes that "
        "name no version call, pinned at submission (``schemas.subworkflow_node``).",
    )


@event("run.submitted", version=2)
class RunSubmitted(Event):
    """v2 adds ``definition`` (see ``_run_submitted_v1_to_v2``)."""

    payload: RunSubmittedPayload


@upcaster("run.submitted", 1)
def _run_submitted_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """v1 carried only the IR. The definition is rebuilt from it: the same nodes in the same
    order and the same edges, so a patch of a run submitted before v2 works; its edge order
    (by source node) may differ from the published text, and a default retry policy is
    spelled out."""
    payload = dict(raw.get("payload") or {})
    if "definition" not in payload and isinstance(payload.get("ir"), dict):
        payload["definition"] = definition_from_ir(WorkflowIR.model_validate(payload["ir"]))
    return {**raw, "payload": payload}


class RunStartedPayload(Payload):
    version: str


@event("run.started")
class RunStarted(Event):
    payload: RunStartedPayload


class NodeScheduledPayload(Payload):
    node_id: str
    node_type: str
    attempt: int = Field(ge=1, description="1 for the first attempt.")
    task_topic: str = Field(description="Where the task was routed.")
    item: int | None = ITEM_FIELD


@event("run.node_scheduled")
class NodeScheduled(Event):
    payload: NodeScheduledPayload


class NodeStartedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    worker: str = Field(description="Which worker process picked the task up.")
    item: int | None = ITEM_FIELD


@event("run.node_started")
class NodeStarted(Event):
    payload: NodeStartedPayload


WaitingFor = Literal["tenant_slots", "concurrency_key", "rate_limit"]


class NodeQueuedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    waiting_for: WaitingFor = Field(
        description="The limit it waits for: the tenant's slots of its type in the worker, "
        "its concurrency key, or its named rate limit."
    )
    reason: str = Field(
        description="In words, with the limit's numbers: `tenant acme has 16 of 16 http "
        "slots in use`, `concurrency key 'customer-7': 2 of 2 running`, `rate limit openai: "
        "next call in 3.2 s`."
    )
    worker: str = Field(description="The worker process it waits in.")
    item: int | None = ITEM_FIELD


@event("run.node_queued")
class NodeQueued(Event):
    """A worker took the task but holds it back for a limit (``workers.fair``): appended
    once per attempt and limit, when the wait starts, not as it goes on. The read model
    shows the reason on the node while it is SCHEDULED; the coordinator routes on none of
    it (the attempt has no deadline until it starts)."""

    payload: NodeQueuedPayload


class NodeProgressPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    seq: int = Field(ge=1, description="1 for the attempt's first progress report.")
    message: str = Field(description="What the node is doing, in its own words.")
    fraction: float | None = Field(
        None, ge=0, le=1, description="How much of its work is done, when it can tell."
    )


@event("run.node_progress")
class NodeProgress(Event):
    """A node's code says how its attempt goes (``job.progress`` in the worker SDK, ``aob``):
    for people watching the run, in its timeline. The coordinator routes on none of it."""

    payload: NodeProgressPayload


class NodeSucceededPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    output: Any = Field(None, description="The output itself when small (see output_inline).")
    output_inline: bool = Field(description="Whether `output` holds the whole output.")
    output_ref: str | None = Field(
        None,
        description="CAS reference of the output: present when the output is too large to "
        "travel inline (over INLINE_OUTPUT_MAX_BYTES); a small output is only in the event.",
    )
    output_size: int = Field(ge=0, description="Bytes of the output's canonical JSON.")
    outcome: str | None = Field(
        None,
        description="The outcome edge guards read when the output does not say it: a "
        "wait_event node's `received` or `timeout` (decided by the coordinator).",
    )
    started_at: datetime | None = STARTED_AT_FIELD
    item: int | None = ITEM_FIELD

    @model_validator(mode="after")
    def _whole_somewhere(self) -> NodeSucceededPayload:
        if not self.output_inline and not self.output_ref:
            raise ValueError("an output that is not inline needs its output_ref")
        return self


@event("run.node_succeeded", version=2)
class NodeSucceeded(Event):
    """v2: ``output_ref`` only for outputs too large to be inline (v1 always had one)."""

    payload: NodeSucceededPayload


@upcaster("run.node_succeeded", 1)
def _node_succeeded_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Every v1 event is a valid v2 event: v1 carried a ref for small outputs too."""
    return raw


class NodeFailedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    error: str = Field(description="What went wrong, for a person or a model to read.")
    retryable: bool = Field(True, description="Whether another attempt may succeed.")
    started_at: datetime | None = STARTED_AT_FIELD
    item: int | None = ITEM_FIELD


@event("run.node_failed")
class NodeFailed(Event):
    payload: NodeFailedPayload


class NodeRetryPlannedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=2, description="The attempt that will be scheduled.")
    due_at: datetime = Field(description="When it will be scheduled (UTC).")
    delay_s: float = Field(ge=0, description="The backoff chosen, jitter included.")
    item: int | None = ITEM_FIELD


@event("run.node_retry_planned")
class NodeRetryPlanned(Event):
    """An attempt failed and may be retried: the next one is due at ``due_at``. The
    coordinator's timer turns that moment into a TimerFired, which schedules it."""

    payload: NodeRetryPlannedPayload


class TimerFiredPayload(Payload):
    kind: Literal["retry", "timeout", "approval", "event"] = Field(
        description="`retry`: a planned attempt is due. `timeout`: an attempt's time is up. "
        "`approval`: an approval's time is up, and its default outcome applies. `event`: a "
        "wait_event node's time is up, and it takes its `timeout` edge."
    )
    node_id: str
    attempt: int = Field(ge=1, description="The attempt the timer is about.")
    due_at: datetime = Field(description="When the timer was due (it fires at or after).")
    timeout_s: float | None = Field(
        None, description="For `timeout`: the limit that passed, grace included."
    )
    item: int | None = ITEM_FIELD


@event("run.timer_fired")
class TimerFired(Event):
    """A moment the coordinator waited for has come. It is a wake-up, not a decision: the
    coordinator decides on it in order with the run's other events, from the run's facts,
    so a timer that fires late, twice, or after its attempt answered changes nothing."""

    payload: TimerFiredPayload


class MapStartedPayload(Payload):
    node_id: str
    items: int = Field(ge=0, description="How many items `over` held.")
    max_parallel: int = Field(ge=1)
    failure: Literal["fail_fast", "collect"]


@event("run.map_started")
class MapStarted(Event):
    """A map node became ready and the coordinator read its list (``run_model.mapping``):
    its items are scheduled from here, each with the node's events naming the item."""

    payload: MapStartedPayload


class NodeSkippedPayload(Payload):
    node_id: str
    reason: str = Field(
        description="Why: a branch not taken, an unknown type, or the run was cancelled."
    )


@event("run.node_skipped")
class NodeSkipped(Event):
    payload: NodeSkippedPayload


class RunWarningPayload(Payload):
    node_id: str | None = None
    message: str


@event("run.warning")
class RunWarning(Event):
    payload: RunWarningPayload


class RunCompletedPayload(Payload):
    output: dict[str, Any] = Field(
        default_factory=dict,
        description="Outputs of the sink nodes that succeeded: inline value, or {'$ref': ref}; "
        "those that would make the event too large are named in `output_elsewhere` instead.",
    )
    output_elsewhere: list[str] = Field(
        default_factory=list,
        description="Sink nodes that succeeded whose outputs are not in `output` (together "
        "they would make the event too large): each is in the node's own "
        "run.node_succeeded (inline, or its output_ref), and in the read model's run output.",
    )


@event("run.completed", version=2)
class RunCompleted(Event):
    """v2: the output of a sink may be named in ``output_elsewhere`` instead of being in
    ``output`` (a v1 reader would take the output for whole)."""

    payload: RunCompletedPayload


@upcaster("run.completed", 1)
def _run_completed_v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Every v1 event is a valid v2 event: v1 had every output in ``output``."""
    return raw


class RunFailedPayload(Payload):
    reason: str
    node_id: str | None = None


@event("run.failed")
class RunFailed(Event):
    payload: RunFailedPayload


class RunCancelRequestedPayload(Payload):
    reason: str | None = None


@event("run.cancel_requested")
class RunCancelRequested(Event):
    payload: RunCancelRequestedPayload


class RunCancelledPayload(Payload):
    reason: str | None = None


@event("run.cancelled")
class RunCancelled(Event):
    payload: RunCancelledPayload


class RunForkedPayload(Payload):
    source_run_id: str = Field(description="The run forked from (left exactly as it was).")
    at: str = Field(
        description="Log position token (`topic:partition:offset`) of the last event of the "
        "source run that the fork includes."
    )
    at_seq: int = Field(
        ge=1, description="How many of the source's distinct events the fork includes."
    )
    input: Any = Field(
        None,
        description="The fork's input: the one given when forking, else the source's. Nodes "
        "that run in the fork see it; outputs reused from the source were made with the old one.",
    )
    history: list[dict[str, Any]] = Field(
        description="The source's events up to `at`, as their envelope JSON, in log order. "
        "Facts, not a folded state: a consumer folds them with its own rules (upcasting old "
        "versions as for any event), so the fork stays event-sourced."
    )

    def history_events(self) -> list[Event]:
        """The carried events, upcast and validated. A type this release does not know (a
        newer producer's) is left out, as the coordinator would route on none of it."""
        out = []
        for raw in self.history:
            try:
                lifted = upcast(dict(raw))
                out.append(event_class(str(lifted.get("type"))).model_validate(lifted))
            except (UnknownEventType, ValidationError):
                continue
        return out


@event("run.forked")
class RunForked(Event):
    """The FIRST event of a run made from another run's history up to a point
    (``aggregate_id`` is the new run). What had finished at that point is kept, outputs
    included, and never runs again; what was in flight or waiting starts afresh in the fork;
    the rest runs as usual. The source run is not touched. Appended by the command API."""

    payload: RunForkedPayload


# --- outside events (wait_event nodes) --------------------------------------------------

# The data of an outside event travels inline, in run.event_received and as the node's
# output in run.node_succeeded: at most what an inline output may be.
MAX_EVENT_DATA_BYTES = INLINE_OUTPUT_MAX_BYTES


class EventAwaitedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    name: str = Field(description="The event's name the node waits for.")
    key: str = Field(description="Its correlation key, rendered.")
    timeout_s: float | None = Field(None, description="How long it waits; no limit if absent.")
    due_at: datetime | None = Field(None, description="When it takes its `timeout` edge.")


@event("run.event_awaited")
class EventAwaited(Event):
    """A wait_event node's worker rendered its name and key: the node is WAITING until an
    event with both is posted (``POST /v1/events``) or its time is up."""

    payload: EventAwaitedPayload


class EventReceivedPayload(Payload):
    node_id: str = Field(description="The node that waited for it when it was posted.")
    attempt: int = Field(ge=1)
    name: str
    key: str
    data: Any = Field(None, description="What was posted with it: the node's output.")
    posted_id: str = Field(description="The posting's id (one posting reaches every waiter).")


@event("run.event_received")
class EventReceived(Event):
    """An outside event reached a run with a node waiting for it. Appended by the command
    API; the coordinator decides: the node takes its `received` edge if it still waits for
    that name, key and attempt, and nothing happens otherwise."""

    payload: EventReceivedPayload


# --- subworkflow nodes (schemas.subworkflow_node) --------------------------------------


class SubworkflowStartedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    child_run_id: str = Field(description="Derived from (run, node, attempt): one per attempt.")
    workflow_id: str
    workflow_name: str
    version: str = Field(description="The version the child run is bound to.")


@event("run.subworkflow_started")
class SubworkflowStarted(Event):
    """A subworkflow node's worker is starting its child run (appended before the child's
    run.submitted): the node WAITS for the child, and a cancel of this run reaches it."""

    payload: SubworkflowStartedPayload


class SubworkflowFinishedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    child_run_id: str
    status: Literal["COMPLETED", "FAILED", "CANCELLED"]
    output: Any = Field(
        None,
        description="COMPLETED: the child's output (its sinks' outputs, large ones as "
        '`{"$ref": ...}`).',
    )
    error: str | None = Field(None, description="FAILED or CANCELLED: the child's reason.")


@event("run.subworkflow_finished")
class SubworkflowFinished(Event):
    """A child run finished: appended to its parent by the coordinator (keyed by the
    parent's id), which then ends the subworkflow node that waits for it."""

    payload: SubworkflowFinishedPayload


# --- approvals (hitl nodes) -----------------------------------------------------------

ApprovalOutcome = Literal["approved", "rejected"]


class ApprovalRequestedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    prompt: str = Field(description="The question for the approver, rendered.")
    timeout_s: float | None = Field(
        None, description="How long the approval may wait; no limit if absent."
    )
    default_outcome: ApprovalOutcome | None = Field(
        None, description="The outcome taken when `timeout_s` passes without a decision."
    )
    due_at: datetime | None = Field(None, description="When the wait ends (UTC), if limited.")


@event("run.approval_requested")
class ApprovalRequested(Event):
    """A hitl node's worker asks a person: the node is WAITING until a decision comes (or
    its time is up). Appended by the hitl worker once the prompt is rendered."""

    payload: ApprovalRequestedPayload


class ApprovalSubmittedPayload(Payload):
    node_id: str
    decision: ApprovalOutcome
    comment: str | None = None
    budget: BudgetRaise | None = Field(
        None,
        description="With `approved`, for a node that waits on the run's budget: its new bounds.",
    )


@event("run.approval_submitted")
class ApprovalSubmitted(Event):
    """A person's decision as received by the command API (the actor is that person). It is
    not yet accepted: the coordinator judges it (ApprovalDecided or ApprovalRefused)."""

    payload: ApprovalSubmittedPayload


class ApprovalDecidedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1, description="The attempt that requested the approval.")
    decision: ApprovalOutcome
    comment: str | None = None
    decided_by: str = Field(description="The approver's id, or `timeout` for the default.")
    timed_out: bool = Field(False, description="Whether the default outcome was taken.")
    submission_id: str | None = Field(
        None, description="The ApprovalSubmitted event accepted (none for a timeout)."
    )

    def node_output(self) -> dict[str, Any]:
        """The hitl node's output, as templates and edge guards see it."""
        return {
            "decision": self.decision,
            "comment": self.comment,
            "decided_by": self.decided_by,
            "timed_out": self.timed_out,
        }


@event("run.approval_decided")
class ApprovalDecided(Event):
    """The coordinator accepted a decision: the hitl node SUCCEEDED with the output
    ``{decision, comment, decided_by, timed_out}``, and the run goes down the edges whose
    ``when`` matches ``decision``."""

    payload: ApprovalDecidedPayload


class ApprovalRefusedPayload(Payload):
    node_id: str
    decision: ApprovalOutcome
    submission_id: str = Field(description="The ApprovalSubmitted event refused.")
    reason: str = Field(description="Why, for the person who sent it.")


@event("run.approval_refused")
class ApprovalRefused(Event):
    """The coordinator refused a submitted decision: the node was not waiting for one, or
    was decided already. Nothing else changes."""

    payload: ApprovalRefusedPayload


# --- agents ---------------------------------------------------------------------------


class TokenUsage(Payload):
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    cached_tokens: int = Field(0, ge=0, description="Prompt tokens the provider had cached.")


class ModelCalledPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    turn: int = Field(ge=1, description="1 for the first model call of the attempt.")
    model: str
    usage: TokenUsage
    finish_reason: str | None = None
    tool_calls: list[str] = Field(
        default_factory=list, description="Names of the tools the model called in this turn."
    )
    cost_usd: float | None = Field(
        None,
        ge=0,
        description="What the call cost in US dollars, priced by the worker when it was made "
        "(`limits.budgets`); absent when the model has no price.",
    )


@event("run.model_called")
class ModelCalled(Event):
    """One model call of an agent node answered: its token usage and what the model asked
    for. Usage is summed from these (failed attempts cost tokens too); they also show an
    agent's progress while it works. The coordinator routes on none of it."""

    payload: ModelCalledPayload


class ToolCalledPayload(Payload):
    node_id: str = Field(description="The agent node whose model called the tool.")
    attempt: int = Field(ge=1, description="The agent's attempt that made the call.")
    call_id: str = Field(
        description="A pure function of the run, node, tool, arguments and the call's ordinal "
        "among identical calls (``schemas.agent_tools.call_id``): the same call made again "
        "by a retried attempt has the same id."
    )
    tool: str = Field(description="As offered to the model: `http`, a node type, `server__tool`.")
    arguments_sha256: str = Field(description="sha256 of the arguments' canonical JSON.")
    ok: bool = Field(description="Whether the call answered; false: `error` says why.")
    result: Any = Field(None, description="The result itself when small (see result_ref).")
    result_ref: str | None = Field(
        None, description="CAS reference of a result too large to travel inline."
    )
    error: str | None = Field(None, description="Why the call failed, as the model was told.")
    duration_ms: float = Field(0.0, ge=0, description="How long the call took.")


@event("run.tool_called")
class ToolCalled(Event):
    """One tool call of an agent node finished (or failed): appended by whoever made it (the
    agent's worker for http and MCP tools, the node type's worker for a registered type).
    The coordinator keeps finished calls per node and gives them to a retried attempt, whose
    worker reuses a result instead of calling again; budgets count the calls."""

    payload: ToolCalledPayload


# --- budgets (a run's budget over its agents' model calls) ----------------------------


class Spend(Payload):
    tokens: int = Field(0, ge=0, description="Total tokens of the calls counted.")
    usd: float = Field(0.0, ge=0, description="Their cost in US dollars, as priced.")
    tool_calls: int = Field(0, ge=0, description="Tool calls the run's agents made.")


class TurnRequestedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    turn: int = Field(ge=1, description="The model call the agent would make next.")
    model: str


@event("run.turn_requested")
class TurnRequested(Event):
    """An agent node in a run with a budget asks whether it may make its next model call.
    Appended by the agent worker before each call; the coordinator answers with
    run.turn_granted or run.budget_exceeded."""

    payload: TurnRequestedPayload


class TurnGrantedPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    turn: int = Field(ge=1)
    spent: Spend = Field(description="The run's spend when the turn was granted.")


@event("run.turn_granted")
class TurnGranted(Event):
    """The coordinator let an agent make the model call it asked for: the run's spend and
    the node's next turn, as foreseen, fit in the budget."""

    payload: TurnGrantedPayload


class BudgetExceededPayload(Payload):
    node_id: str
    attempt: int = Field(ge=1)
    turn: int = Field(ge=1, description="The model call that was not made.")
    spent: Spend = Field(description="The run's spend, every node's calls counted.")
    next_turn: Spend = Field(
        description="What the node's next call was foreseen to cost: its largest call so far."
    )
    budget: Budget = Field(description="The budget it would pass.")
    reason: str = Field(description="`budget exceeded: N of M tokens`, and what would pass it.")


@event("run.budget_exceeded")
class BudgetExceeded(Event):
    """The coordinator refused an agent's next model call: it would pass the run's budget.
    With `on_exceed: fail` a run.node_failed follows; with `wait` the node WAITS for a person
    to raise the budget (an approval of kind `budget`)."""

    payload: BudgetExceededPayload


class BudgetRaisedPayload(Payload):
    node_id: str = Field(description="The node whose approval raised it.")
    attempt: int = Field(ge=1, description="The attempt that waited.")
    budget: Budget = Field(description="The run's budget from now on.")
    previous: Budget = Field(description="The budget it replaces.")
    decided_by: str
    submission_id: str = Field(description="The run.approval_submitted event accepted.")


@event("run.budget_raised")
class BudgetRaised(Event):
    """The coordinator accepted a raise of the run's budget: the node that waited on it runs
    again in a new attempt, which starts its conversation afresh."""

    payload: BudgetRaisedPayload


# --- patches (DESIGN.md, Patching a running workflow) ----------------------------------


class PatchSubmittedPayload(Payload):
    patch: list[Any] = Field(
        description="RFC 6902 operations on the run's current definition, as submitted "
        "(judged by the coordinator, so not trusted to be well-formed)."
    )
    reason: str = Field(description="Why the author wants the change.")
    base_version: str | None = Field(
        None,
        description="The version the author wrote the patch against. If the run has moved "
        "on since, the patch is refused; if absent, it is judged against the current version.",
    )
    node_id: str | None = Field(None, description="The agent node that proposed it, if any.")
    attempt: int | None = Field(None, description="That node's attempt.")


@event("run.patch_submitted")
class PatchSubmitted(Event):
    """A proposed change to one run's definition, by a person (REST, the actor is their key)
    or an agent node (the actor is ``agent``, id ``<run>/<node>``). Not yet accepted: the
    coordinator judges it (PatchApplied or PatchRejected). Its event id is the patch id."""

    payload: PatchSubmittedPayload


class PatchAppliedPayload(Payload):
    patch_id: str = Field(description="The PatchSubmitted event applied.")
    from_version: str = Field(description="The run's version before.")
    to_version: str = Field(description="The new version: the sha256 of `definition`.")
    definition: dict[str, Any] = Field(description="The new definition, canonical.")
    ir: WorkflowIR = Field(description="The new definition compiled: routing goes on with it.")
    definition_ref: str = Field(description="CAS reference of `definition` (its sha256).")
    ir_ref: str = Field(description="CAS reference of `ir` (its sha256).")
    added_nodes: list[str] = Field(default_factory=list, description="Node ids added.")
    removed_nodes: list[str] = Field(default_factory=list, description="Node ids removed.")
    changed_nodes: list[str] = Field(
        default_factory=list, description="Node ids kept whose definition changed."
    )
    agent_spawns: list[str] = Field(
        default_factory=list,
        description="Agent nodes this patch added on an agent's proposal: they count "
        "towards the run's agent spawn limit.",
    )


@event("run.patch_applied")
class PatchApplied(Event):
    """The coordinator accepted a patch whole: the run is at ``to_version`` from here on.
    The definition and IR are inline (the coordinator does no storage I/O); the projector
    stores both in the CAS under the refs given here, which are their content hashes."""

    payload: PatchAppliedPayload


class PatchRejectedPayload(Payload):
    patch_id: str = Field(description="The PatchSubmitted event refused.")
    reasons: list[str] = Field(
        description="Every rule the patch breaks, in words to act on (at most 50, each cut to "
        "1,000 characters, then how many more there were)."
    )
    current_version: str | None = Field(
        None,
        description="The run's version the patch was judged against (absent when the "
        "run had finished).",
    )
    current_definition: dict[str, Any] | None = Field(
        None,
        description="The current definition, when the patch was written against an older "
        "version: what to write it against again (left out, and a reason says so, when it "
        "would make the event too large).",
    )


@event("run.patch_rejected")
class PatchRejected(Event):
    """The coordinator refused a patch: nothing of it applies, and the run goes on as it
    was. ``reasons`` say what to change."""

    payload: PatchRejectedPayload


RUN_TERMINAL_EVENTS: tuple[type[Event], ...] = (RunCompleted, RunFailed, RunCancelled)
