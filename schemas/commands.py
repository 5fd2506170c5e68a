"""Commands: what clients ask for (imperative names). Unknown fields are refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.workflow import WorkflowDefinition

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublishWorkflow(Command):
    name: str = Field(pattern=NAME_PATTERN, description="Workflow name, unique per tenant.")
    definition: WorkflowDefinition


class SubmitRun(Command):
    workflow_id: str = Field(min_length=1, max_length=200, description="Workflow id or name.")
    version: str | None = Field(None, description="A published version; the latest if absent.")
    input: Any = Field(None, description="The run input: any JSON value.")


class SubmitPatch(Command):
    patch: list[dict[str, Any]] = Field(
        min_length=1, description="RFC 6902 operations on the run's current definition."
    )
    reason: str = Field(min_length=1, max_length=2_000)
    base_version: str | None = Field(
        None,
        max_length=200,
        description="The version the patch was written against: refused if the run has "
        "moved on since. Judged against the current version if absent.",
    )


class DecideApproval(Command):
    decision: Literal["approve", "reject"]
    comment: str | None = Field(None, max_length=4_000)


class CancelRun(Command):
    reason: str | None = Field(None, max_length=2_000)


class ForkRun(Command):
    at: str | int = Field(
        description="The last event of the source run the fork includes: a seq (1 for the "
        "first event, as in the run's events) or a log position token "
        "`topic:partition:offset`."
    )
    input: Any = Field(
        None, description="The fork's input; the source's when absent (null is not absent)."
    )
