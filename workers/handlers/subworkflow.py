"""``subworkflow``: start a child run of another workflow of the tenant's, and wait for it.

The config (``schemas.subworkflow_node``) names the workflow, its version (absent: the one
pinned when the parent run was submitted, which the task carries; ``latest``; or a version)
and the child's input, a template object rendered over the run context (not over secrets:
a run's input is kept in the log). In this order, so that the parent always meets the start
before the child's end:

1. the child's depth is checked against ``AOB_MAX_SUBWORKFLOW_DEPTH``, the input rendered
   and the version found: a refusal fails the node with the reason, and nothing starts;
2. ``run.subworkflow_started`` is appended to the parent (acknowledged before 3): the node
   WAITS, and the parent knows the child's id (a cancel of the parent reaches the child);
3. the child is submitted as every run is (``run_submission.start_run``: admitted under the
   tenant's limits, registered, ``run.submitted`` with the parent, the depth and its own
   pinned versions).

The child's id derives from (parent run, node, attempt), and its run.submitted's id from the
child's, so a task delivered twice starts one child. When the child finishes, the
coordinator appends ``run.subworkflow_finished`` to the parent, whose decider ends the node.
A refusal at 3 that waiting can cure (the tenant's submission rate) is retryable, under the
node's retry policy; any other is not.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import ValidationError

from cas import ContentStore
from command_api import registry
from command_api.errors import CommandError, RateLimited
from infra.bus import EventBus
from run_submission import ParentLink, SubmissionPorts, check_input_size, start_run
from run_submission.submit import check_depth
from schemas import SubmitRun
from schemas.envelope import Actor, deterministic_id
from schemas.events import SubworkflowStarted, SubworkflowStartedPayload
from schemas.reports import report
from schemas.subworkflow_node import LATEST, SubworkflowCall, SubworkflowConfig, child_run_id
from schemas.workflow_ids import workflow_id_for
from templating import renders
from workers.errors import ConfigError, NodeError
from workers.handlers.base import WAITING, Job


class Subworkflow:
    def __init__(self, ports: SubmissionPorts) -> None:
        self.ports = ports

    async def __call__(self, job: Job) -> Any:
        try:
            config = SubworkflowConfig.model_validate(job.config)
        except ValidationError as e:
            raise ConfigError(f"subworkflow config: {e}") from e
        task = job.task
        call = task.subworkflow or SubworkflowCall()
        parent = ParentLink(task.run_id, task.node_id, task.attempt, call.depth + 1)
        child_input = (
            await renders.render_value(config.input, job.context)
            if config.input is not None
            else None
        )
        workflow_id = workflow_id_for(task.tenant, config.workflow)
        wanted = call.pinned if config.version is None else config.version
        try:
            check_depth(parent)
            check_input_size(self.ports, child_input)
            version = await registry.find_version(
                self.ports.pool, task.tenant, workflow_id, None if wanted == LATEST else wanted
            )
        except CommandError as e:
            raise NodeError(e.detail) from e
        if version is None:
            which = f"version {wanted!r} of " if wanted not in (None, LATEST) else ""
            raise NodeError(
                f"{which}workflow {config.workflow!r} not found among the tenant's workflows: "
                "publish it first"
            )
        child_id = child_run_id(task.run_id, task.node_id, task.attempt)
        started = SubworkflowStartedPayload(
            node_id=task.node_id,
            attempt=task.attempt,
            child_run_id=child_id,
            workflow_id=version.workflow_id,
            workflow_name=version.name,
            version=version.version,
        )
        await job.emit(report(SubworkflowStarted, task, started, "subworkflow_started"))
        actor = Actor(
            kind="system", id=f"subworkflow/{task.run_id}/{task.node_id}", tenant=task.tenant
        )
        try:
            command = SubmitRun(
                workflow_id=version.workflow_id, version=version.version, input=child_input
            )
            await start_run(
                self.ports,
                task.tenant,
                actor,
                command,
                run_id=child_id,
                event_id=deterministic_id("subworkflow-submit", child_id),
                parent=parent,
            )
        except ValidationError as e:
            raise NodeError(f"the child run's input was refused: {e}") from e
        except RateLimited as e:
            raise NodeError(f"the child run was not admitted: {e.detail}", retryable=True) from e
        except CommandError as e:
            raise NodeError(f"the child run was refused: {e.detail}") from e
        return WAITING


async def open_subworkflow(dsn: str, bootstrap: str, cas: ContentStore) -> tuple[Subworkflow, Any]:
    """The handler, and what closes its connections."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    bus = EventBus(bootstrap, client_id="aob-subworkflow")
    await bus.start()

    async def close() -> None:
        await bus.stop()
        await pool.close()

    return Subworkflow(SubmissionPorts(pool=pool, bus=bus, cas=cas)), close
