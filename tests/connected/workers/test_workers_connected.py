"""The worker process against the real Kafka and MinIO: tasks in, events and blobs out."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import pytest

from cas.store import ContentStore
from infra.bus import EventBus
from infra.settings import Settings
from schemas.codec import decode_event
from schemas.envelope import Event, deterministic_id
from schemas.events import INLINE_OUTPUT_MAX_BYTES, NodeFailed, NodeStarted, NodeSucceeded
from schemas.tasks import NodeContext, NodeTask
from schemas.topics import DLQ, RUN_EVENTS, task_topic
from tests.helpers import eventually

pytestmark = pytest.mark.connected


def _task(config: dict[str, Any], nodes: dict[str, NodeContext] | None = None) -> NodeTask:
    run_id = f"run-{uuid.uuid4()}"
    return NodeTask(
        task_id=str(uuid.uuid4()),
        run_id=run_id,
        tenant="acme",
        node_id="shape",
        node_type="transform",
        attempt=1,
        config=config,
        input={"items": [1, 2, 3], "who": "Ada"},
        nodes=nodes or {},
    )


async def _events_of(reader: Any, run_id: str, seen: list[Event]) -> list[Event]:
    for record in await reader.read():
        if record.key == run_id.encode():
            seen.append(decode_event(record.value))
    return seen


E = TypeVar("E", bound=Event)


async def _first(kind: type[E], reader: Any, run_id: str, seen: list[Event]) -> E:
    """The run's first event of ``kind`` read so far (``seen`` collects them all)."""
    events = await _events_of(reader, run_id, seen)
    found = [e for e in events if isinstance(e, kind)]
    assert found, [e.type for e in events]
    return found[0]


async def test_transform_task_reports_its_start_and_rendered_output(
    worker_process: Any, bus: EventBus, reader_factory: Any, stack: Settings
) -> None:
    store = ContentStore.from_settings(stack)
    big_ref, _ = await store.put_json({"rows": list(range(5))})  # an upstream output by ref
    reader = await reader_factory(RUN_EVENTS)
    task = _task(
        {
            "output": {
                "n": "{{ input.items | length }}",
                "hi": "Hi {{ input.who }}",
                "up": "{{ nodes.fetch.output.rows[-1] }}",
            }
        },
        {"fetch": NodeContext(status="SUCCEEDED", output_ref=big_ref)},
    )
    await bus.send_task(task)
    seen: list[Event] = []
    ok = await eventually(lambda: _first(NodeSucceeded, reader, task.run_id, seen), timeout=60)
    # Its outcome tells its start; a NodeStarted of its own comes only for an attempt that
    # took longer than the workers' 100 ms (workers.start_report), and tells the same.
    started_at = ok.payload.started_at
    assert started_at is not None and started_at <= ok.occurred_at
    starts = [e for e in seen if isinstance(e, NodeStarted)]
    for start in starts:
        assert start.event_id == deterministic_id(task.task_id, "started")
        assert start.occurred_at == started_at
    expected = {"n": 3, "hi": "Hi Ada", "up": 4}
    assert ok.event_id == deterministic_id(task.task_id, "succeeded")
    assert (ok.causation_id, ok.correlation_id) == (task.task_id, task.run_id)
    assert ok.actor.id == "worker:transform" and ok.actor.tenant == "acme"
    assert ok.payload.output_inline and ok.payload.output == expected
    assert ok.payload.output_ref is None  # small: only in the event, nothing in the CAS


async def test_a_large_output_goes_to_the_cas_and_travels_by_reference(
    worker_process: Any, bus: EventBus, reader_factory: Any, stack: Settings
) -> None:
    store = ContentStore.from_settings(stack)
    reader = await reader_factory(RUN_EVENTS)
    task = _task({"output": {"rows": "{{ range(5000) | list }}"}})
    await bus.send_task(task)
    seen: list[Event] = []
    ok = await eventually(lambda: _first(NodeSucceeded, reader, task.run_id, seen), timeout=60)
    expected = {"rows": list(range(5000))}
    assert ok.payload.output_size > INLINE_OUTPUT_MAX_BYTES
    assert not ok.payload.output_inline and ok.payload.output is None
    assert ok.payload.output_ref is not None
    assert await store.get_json(ok.payload.output_ref) == expected


async def test_bad_template_fails_the_node_by_name(
    worker_process: Any, bus: EventBus, reader_factory: Any
) -> None:
    reader = await reader_factory(RUN_EVENTS)
    task = _task({"output": {"x": "{{ input.nope.deeper }}"}})
    await bus.send_task(task)
    seen: list[Event] = []
    ev = await eventually(lambda: _first(NodeFailed, reader, task.run_id, seen), timeout=60)
    assert "'shape'" in ev.payload.error and "nope" in ev.payload.error
    assert ev.payload.retryable is False
    assert ev.event_id == deterministic_id(task.task_id, "failed")


async def test_poison_task_goes_to_the_dlq(
    worker_process: Any, bus: EventBus, reader_factory: Any
) -> None:
    reader = await reader_factory(DLQ)
    key = f"poison-{uuid.uuid4()}".encode()
    await bus.send(task_topic("transform"), key, b"\\xff not a task", [])
    seen: list[Any] = []

    async def parked() -> Any:
        seen.extend(r for r in await reader.read() if r.key == key)
        assert seen
        return seen[0]

    record = await eventually(parked, timeout=60)
    headers = dict(record.headers)
    assert b"not JSON" in headers["aob-dlq-reason"]
    assert headers["aob-dlq-source"].startswith(b"aob.tasks.transform:")
