"""JSON Schema export of the wire contract: one file per event, task, command and model."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.commands import CancelRun, DecideApproval, PublishWorkflow, SubmitPatch, SubmitRun
from schemas.envelope import registered_events
from schemas.ir import WorkflowIR
from schemas.tasks import NodeTask
from schemas.workflow import WorkflowDefinition


def contract_models() -> dict[str, type[BaseModel]]:
    """Every model of the contract, by the file name its schema is written to."""
    models: dict[str, type[BaseModel]] = {
        f"event.{name}": cls for name, cls in sorted(registered_events().items())
    }
    models |= {
        "task.node": NodeTask,
        "workflow.definition": WorkflowDefinition,
        "workflow.ir": WorkflowIR,
        "command.publish_workflow": PublishWorkflow,
        "command.submit_run": SubmitRun,
        "command.submit_patch": SubmitPatch,
        "command.decide_approval": DecideApproval,
        "command.cancel_run": CancelRun,
    }
    return models


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every contract model; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in contract_models().items():
        path = directory / f"{name}.schema.json"
        schema = model.model_json_schema(by_alias=True)
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
