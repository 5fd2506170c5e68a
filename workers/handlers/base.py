"""What a handler is: one async callable taking one ``Job``, returning a JSON value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from schemas.tasks import NodeTask


@dataclass(frozen=True)
class Job:
    """One attempt of one node: the task as received and its template context, with every
    upstream output resolved (``{input, nodes: {<id>: {output, status}}}``)."""

    task: NodeTask
    context: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.task.config


class Handler(Protocol):
    async def __call__(self, job: Job, /) -> Any: ...
