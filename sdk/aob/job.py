"""``Job``: one attempt of one node, as the node's code sees it.

The worker runtime hands every handler an attempt (``workers.handlers.base.Job``: the task
as received, its run context with every upstream output read back from the CAS, the values
of the secrets its config names). A node declared with ``@node`` gets this view of it
instead: its config already rendered and validated, and the task's fields by name.

``job.nodes`` holds the upstream outputs by node id (``job.nodes["fetch"]``), the values
that templates reach as ``nodes.fetch.output``; a node that ended without output (skipped)
has ``None``.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

from schemas import reports
from schemas.envelope import Event
from schemas.position import Position
from schemas.tasks import NodeTask
from workers.handlers.base import Job as Attempt

ConfigT = TypeVar("ConfigT")


class Job(Generic[ConfigT]):
    """What a ``@node`` function is called with.

    ``config`` is the node's config with its templates rendered (``{{ input.name }}``,
    ``{{ nodes.fetch.output.id }}``, ``{{ secrets.TOKEN }}``), validated by the node's
    pydantic model when it declares one (then an instance of it). ``idempotency_key`` is
    the same for every delivery of this attempt (``<run>/<node>/<attempt>``): pass it to the
    systems the node changes, so that an attempt run twice (after a worker died) changes
    them once.
    """

    __slots__ = ("_attempt", "_config", "_progress_reports")

    def __init__(self, attempt: Attempt, config: ConfigT) -> None:
        self._attempt = attempt
        self._config = config
        self._progress_reports = 0

    @property
    def config(self) -> ConfigT:
        return self._config

    @property
    def input(self) -> Any:
        """The run's input."""
        return self._attempt.task.input

    @property
    def nodes(self) -> dict[str, Any]:
        """The outputs of the upstream nodes that finished, by node id."""
        upstream = self._attempt.context.get("nodes", {})
        return {node_id: ctx.get("output") for node_id, ctx in upstream.items()}

    @property
    def run_id(self) -> str:
        return self._attempt.task.run_id

    @property
    def node_id(self) -> str:
        return self._attempt.task.node_id

    @property
    def node_type(self) -> str:
        return self._attempt.task.node_type

    @property
    def attempt(self) -> int:
        """1 for the node's first attempt, 2 for its first retry, and so on."""
        return self._attempt.task.attempt

    @property
    def idempotency_key(self) -> str:
        return self._attempt.task.idempotency_key

    @property
    def tenant(self) -> str:
        return self._attempt.task.tenant

    @property
    def timeout_s(self) -> float | None:
        """The node's time limit per attempt, if its definition sets one (else the
        worker's default applies)."""
        return self._attempt.task.timeout_s

    async def progress(self, message: str, fraction: float | None = None) -> None:
        """Tell whoever watches the run how the work goes (``run.node_progress``, shown in
        the run's timeline): ``await job.progress("fetched 40 of 120 pages", 40 / 120)``.

        Each call appends one event and waits until Kafka has it: report steps, not every
        item of a loop."""
        if not isinstance(message, str):
            raise TypeError(f"progress message must be a string, not {type(message).__name__}")
        if fraction is not None and not (
            isinstance(fraction, int | float) and math.isfinite(fraction) and 0 <= fraction <= 1
        ):
            raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
        self._progress_reports += 1
        event = reports.progress(
            self._attempt.task,
            self._progress_reports,
            message,
            None if fraction is None else float(fraction),
        )
        await self._attempt.emit(event)

    # --- for nodes that go further (the built-in ones use these) ---------------------------

    @property
    def task(self) -> NodeTask:
        """The task as the coordinator sent it (its config as written, templates and all)."""
        return self._attempt.task

    @property
    def template_context(self) -> dict[str, Any]:
        """What templates render over: ``input``, ``nodes`` and the ``secrets`` the config
        names. It holds secret values: never show it to anyone (an agent's model takes
        ``context``)."""
        return self._attempt.template_context

    @property
    def context(self) -> dict[str, Any]:
        """``{input, nodes: {<id>: {output, status}}}``, without secrets."""
        return self._attempt.context

    async def emit(self, event: Event) -> Position | None:
        """Append ``event`` to the run's stream (``workers.handlers.base.Job.emit``): give
        it an id derived from the task (``schemas.reports.report``)."""
        return await self._attempt.emit(event)
