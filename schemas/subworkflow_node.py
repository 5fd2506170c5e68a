"""The ``subworkflow`` node: a child run of another published workflow of the same tenant.

```json
{"id": "enrich", "type": "subworkflow", "config": {
  "workflow": "enrich-order", "version": "latest",
  "input": {"order": "{{ input.order }}", "customer": "{{ nodes.fetch.output.body }}"}}}
```

- ``workflow``: the name (or id) of a workflow of the same tenant.
- ``version``: absent (the default), the version that was the workflow's latest when the
  parent run was submitted (pinned in the parent's ``run.submitted``: a run keeps calling what
  it was submitted with, however often the child workflow is published meanwhile); ``"latest"``,
  the latest when the child starts; or a published version (its hash).
- ``input``: the child run's input, a template object rendered as a transform's output is.

The node's worker starts the child run (``workers.handlers.subworkflow``) and the node WAITS
until the child finishes: its output is the child's output (the outputs of the child's sinks,
large ones as CAS references, as in any run's output), or it fails with the child's reason
(failed or cancelled). Cancelling the parent cancels its unfinished children, and theirs.
Runs nest at most ``AOB_MAX_SUBWORKFLOW_DEPTH`` deep (default 8): a start beyond that is
refused, and the node fails naming the limit, so a workflow that calls itself stops there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.commands import MAX_REF_CHARS
from schemas.envelope import deterministic_id

SUBWORKFLOW = "subworkflow"
LATEST = "latest"


class SubworkflowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str = Field(
        min_length=1, max_length=MAX_REF_CHARS, description="A workflow of the tenant's."
    )
    version: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_REF_CHARS,
        description="Absent: pinned when the parent was submitted; `latest`: when the child "
        "starts; else a published version.",
    )
    input: Any = Field(None, description="The child's input: a template object.")


class SubworkflowCall(BaseModel):
    """What a subworkflow node's task carries besides its config (``NodeTask.subworkflow``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    depth: int = Field(0, ge=0, description="The depth of the run the node is in (root: 0).")
    pinned: str | None = Field(
        None,
        description="The version of the called workflow pinned when the run was submitted "
        "(used when the node's config names no version).",
    )


ChildStatus = Literal["COMPLETED", "FAILED", "CANCELLED"]


def subworkflow_config_reasons(node_id: str, config: dict[str, Any]) -> list[str]:
    """Why a subworkflow node's config is refused at publish (empty when it is fine)."""
    try:
        SubworkflowConfig.model_validate(config)
    except ValidationError as e:
        return [
            f"node {node_id!r} (subworkflow): config"
            + "".join(f".{p}" for p in err["loc"])
            + f": {err['msg']}"
            for err in e.errors()
        ]
    return []


def child_run_id(run_id: str, node_id: str, attempt: int) -> str:
    """The child run of a subworkflow node's attempt: the same however often the task is
    delivered or its start retried, so a child is never started twice."""
    return deterministic_id("subworkflow-run", run_id, node_id, str(attempt))
