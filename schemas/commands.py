"""Commands: what clients ask for (imperative names). Unknown fields are refused.

Every field is bounded here, or by the command API's door (``command_api.door``: the rules of
``schemas.values`` for every value, and the body's size) and its routes (the run input's
size, an event's size).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from schemas.budgets import Budget, BudgetRaise
from schemas.workflow import WorkflowDefinition
from schemas.workflow_ids import uuid_name_refusal

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Versions are sha256 hex digests (64 characters); ids and names are shorter than this.
MAX_REF_CHARS = 200
# Operations in one patch; also the coordinator's default (``run_model.patching``).
MAX_PATCH_OPS = 1_000
# A fork point: a seq, or a log position token ``topic:partition:offset`` (a Kafka topic
# name has at most 249 characters).
MAX_POSITION_CHARS = 300


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PublishWorkflow(Command):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="Workflow name, unique per tenant; not shaped like a UUID (a UUID names "
        "a workflow by its id).",
    )
    definition: WorkflowDefinition

    @field_validator("name", mode="before")
    @classmethod
    def _name_is_not_an_id(cls, name: object) -> object:
        # Before the pattern: a braced or urn:uuid: spelling gets this reason, not the
        # pattern's.
        if isinstance(name, str) and (refusal := uuid_name_refusal(name)):
            raise PydanticCustomError("uuid_shaped_name", refusal)
        return name


class SubmitRun(Command):
    workflow_id: str = Field(
        min_length=1, max_length=MAX_REF_CHARS, description="Workflow id or name."
    )
    version: str | None = Field(
        None, max_length=MAX_REF_CHARS, description="A published version; the latest if absent."
    )
    input: Any = Field(None, description="The run input: any JSON value.")
    budget: Budget | None = Field(
        None,
        description="What the run's agent nodes may spend together: replaces the "
        "workflow's budget; without either, the tenant's default applies.",
    )


class SubmitPatch(Command):
    patch: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_PATCH_OPS,
        description="RFC 6902 operations on the run's current definition.",
    )
    reason: str = Field(min_length=1, max_length=2_000)
    base_version: str | None = Field(
        None,
        max_length=MAX_REF_CHARS,
        description="The version the patch was written against: refused if the run has "
        "moved on since. Judged against the current version if absent.",
    )


class DecideApproval(Command):
    decision: Literal["approve", "reject"]
    comment: str | None = Field(None, max_length=4_000)
    budget: BudgetRaise | None = Field(
        None,
        description="For a node that waits on the run's budget: the new bounds that let it "
        "go on (with `approve` only).",
    )

    @model_validator(mode="after")
    def _raise_only_when_approving(self) -> DecideApproval:
        if self.budget is not None and self.decision != "approve":
            raise ValueError("a budget is given only with decision `approve`")
        return self


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

    @field_validator("at")
    @classmethod
    def _at_is_bounded(cls, at: str | int) -> str | int:
        # A validator, not max_length: a constraint on one member of the union would name
        # that member in the error's path (``at["constrained-str"]``).
        if isinstance(at, str) and len(at) > MAX_POSITION_CHARS:
            raise ValueError(f"a seq or position has at most {MAX_POSITION_CHARS} characters")
        return at
