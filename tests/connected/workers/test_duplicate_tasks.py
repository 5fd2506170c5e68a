"""A task sent twice (a coordinator that crashed after sending it) runs its handler once.

The executor runs in this process against the real Kafka and MinIO, with a handler that
counts its calls: the side effect a duplicate must not repeat.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cas.store import ContentStore
from infra.bus import EventBus
from infra.settings import Settings
from schemas.codec import decode_event
from schemas.events import NodeSucceeded
from schemas.tasks import NodeTask
from schemas.topics import RUN_EVENTS
from tests.helpers import eventually
from workers.execute import TaskExecutor
from workers.handlers.base import Job

pytestmark = pytest.mark.connected


class CountingHandler:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, job: Job, /) -> Any:
        self.calls += 1
        await self.release.wait()
        return {"calls": self.calls}


async def test_copies_of_one_task_run_the_handler_once(
    stack: Settings, bus: EventBus, reader_factory: Any
) -> None:
    handler = CountingHandler()
    executor = TaskExecutor(
        events=bus,
        store=ContentStore.from_settings(stack),
        handlers={"noop": handler},
        worker_name="test-worker",
        report_start_after_s=0,  # every start on its own, at once, whatever the timing
    )
    run_id = f"dup-{uuid.uuid4()}"
    task = NodeTask(
        task_id=str(uuid.uuid4()),
        run_id=run_id,
        tenant="acme",
        node_id="once",
        node_type="noop",
        attempt=1,
    )
    reader = await reader_factory(RUN_EVENTS)
    # Two copies arrive while the first is still running, a third after it finished.
    first, second = asyncio.create_task(executor.run(task)), asyncio.create_task(executor.run(task))

    def first_copy_running() -> None:
        assert handler.calls == 1

    await eventually(first_copy_running)
    handler.release.set()
    await asyncio.gather(first, second)
    await executor.run(task.model_copy())
    assert handler.calls == 1
    assert executor.duplicates_skipped == 2

    seen: list[Any] = []

    async def read() -> None:
        records = await reader.read()
        seen.extend(
            ev for ev in map(decode_event, (r.value for r in records)) if ev.aggregate_id == run_id
        )

    async def reported() -> None:
        await read()
        assert any(isinstance(ev, NodeSucceeded) for ev in seen)

    await eventually(reported)
    await read()  # every copy's reports were acknowledged before: any extra is here now
    assert [ev.type for ev in seen] == ["run.node_started", "run.node_succeeded"]
