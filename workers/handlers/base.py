"""What a handler is: one async callable taking one ``Job``, returning a JSON value.

A handler may also append events about its work while it runs (``Job.emit``: an agent's
model calls, a hitl node's request for approval), and may end with ``WAITING`` instead of
an output: its part is done, and what becomes of the node is decided outside the worker (a
person's decision; the coordinator's, for an agent stopped by the run's budget), so no
outcome is reported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from schemas.envelope import Event
from schemas.position import Position
from schemas.tasks import NodeTask

# Appends an event to the run's stream; the worker's returns where it landed, a test's may not.
Reporter = Callable[[Event], Awaitable[Position | None]]
# Sends a task to its type's topic (an agent's call of a registered node type).
TaskSender = Callable[[NodeTask], Awaitable[object]]


class Blobs(Protocol):
    """The CAS as a handler may use it (large tool results)."""

    async def put_bytes(self, data: bytes, content_type: str = ...) -> str: ...
    async def get_json(self, ref: str) -> Any: ...


class _Waiting:
    def __repr__(self) -> str:
        return "WAITING"


WAITING: Final = _Waiting()
"""Returned by a handler whose node now waits outside the worker (see the module doc)."""


@dataclass(frozen=True)
class Job:
    """One attempt of one node: the task as received and its run context, with every
    upstream output resolved (``{input, nodes: {<id>: {output, status}}}``), and the values
    of the secrets its config names.

    Templates render over ``template_context`` (the run context and ``secrets``); anything
    that shows the run context to someone (an agent's model) takes ``context``, which holds
    no secret.
    """

    task: NodeTask
    context: dict[str, Any]
    report: Reporter | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    store: Blobs | None = field(default=None, repr=False)
    send_task: TaskSender | None = field(default=None, repr=False)

    @property
    def template_context(self) -> dict[str, Any]:
        if not self.secrets:
            return self.context
        return {**self.context, "secrets": dict(self.secrets)}

    @property
    def config(self) -> dict[str, Any]:
        return self.task.config

    async def emit(self, event: Event) -> Position | None:
        """Append ``event`` to the run's stream (retried until Kafka acknowledges it) and
        return where it landed, when the reporter says. Give it a deterministic id
        (``schemas.reports.report``): an attempt delivered twice must append the same
        facts."""
        if self.report is None:
            raise RuntimeError("this job was made without a reporter")
        return await self.report(event)


class Handler(Protocol):
    async def __call__(self, job: Job, /) -> Any: ...
