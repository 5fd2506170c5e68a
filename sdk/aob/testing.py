"""Run a node's code in a test, without a stack: ``await attempt(shout, config={...})``.

The attempt goes through the worker runtime's own executor (``workers.execute``), against a
log and a CAS in memory: its config rendered and validated, its failures classed and its
output checked exactly as on a running system::

    from aob.testing import attempt

    async def test_shout() -> None:
        result = await attempt(shout, config={"text": "{{ input.word }}"}, input={"word": "hi"})
        assert result.output == {"text": "HI!"}
        assert result.progress == [("shouting for node", None)]

``nodes`` gives the outputs of upstream nodes by id, ``secrets`` the tenant's secrets that
the config may name (``{{ secrets.TOKEN }}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aob.nodes import NodeDefinition
from schemas.envelope import Event
from schemas.events import NodeFailed, NodeProgress, NodeSucceeded
from schemas.position import Position
from schemas.tasks import NodeContext, NodeTask
from secret_store.errors import SecretNotFound
from workers.execute import TaskExecutor


@dataclass
class Attempt:
    """How the attempt ended, and what it reported on the way."""

    events: list[Event] = field(default_factory=list)
    output: Any = None  # the node's output (None if it did not succeed)

    @property
    def succeeded(self) -> bool:
        return any(isinstance(e, NodeSucceeded) for e in self.events)

    @property
    def error(self) -> str | None:
        """Why the node failed, as the run records it (``None`` if it did not fail)."""
        failed = [e for e in self.events if isinstance(e, NodeFailed)]
        return failed[-1].payload.error if failed else None

    @property
    def retryable(self) -> bool | None:
        """Whether the failure lets the node's retry policy run another attempt."""
        failed = [e for e in self.events if isinstance(e, NodeFailed)]
        return failed[-1].payload.retryable if failed else None

    @property
    def progress(self) -> list[tuple[str, float | None]]:
        """(message, fraction) of each ``job.progress`` call, in order."""
        return [
            (e.payload.message, e.payload.fraction)
            for e in self.events
            if isinstance(e, NodeProgress)
        ]


class _Log:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def append(self, topic: str, event: Event) -> Position:
        self.events.append(event)
        return Position(topic, 0, len(self.events) - 1)


class _Blobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        ref = f"memory:{len(self.blobs)}"
        self.blobs[ref] = data
        return ref

    async def get_json(self, ref: str) -> Any:
        return json.loads(self.blobs[ref])


class _Secrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]:
        wanted = list(names)
        missing = [n for n in wanted if n not in self._values]
        if missing:
            raise SecretNotFound(tenant, missing)
        return {n: self._values[n] for n in wanted}


async def attempt(
    definition: NodeDefinition,
    config: dict[str, Any] | None = None,
    *,
    input: Any = None,
    nodes: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    attempt_number: int = 1,
    timeout_s: float | None = None,
    run_id: str = "run-1",
    node_id: str = "node",
    tenant: str = "tenant",
) -> Attempt:
    """Run one attempt of ``definition``'s node with this config and run context."""
    task = NodeTask(
        task_id=f"{run_id}/{node_id}/{attempt_number}",
        run_id=run_id,
        tenant=tenant,
        node_id=node_id,
        node_type=definition.name,
        attempt=attempt_number,
        config=config or {},
        timeout_s=timeout_s,
        input=input,
        nodes={
            upstream: NodeContext(status="SUCCEEDED", output=output)
            for upstream, output in (nodes or {}).items()
        },
    )
    log, blobs = _Log(), _Blobs()
    executor = TaskExecutor(
        events=log,
        store=blobs,
        handlers={definition.name: definition},
        worker_name="test",
        secrets=_Secrets(secrets or {}),
    )
    await executor.run(task)
    result = Attempt(events=log.events)
    for event in log.events:
        if isinstance(event, NodeSucceeded):
            p = event.payload
            result.output = (
                p.output if p.output_inline else await blobs.get_json(p.output_ref or "")
            )
    return result
