"""The batched coordinator: a batch's records are stepped in order, the decisions of the whole
batch are sent and acknowledged once, and only then are the states and markers stored.

The table is a dict and the producer a recorder, so only the loop's bookkeeping is under
test; what is decided is the decider's (tests/unit/test_decider*.py).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from processors.config import CoordinatorConfig
from processors.coordinator import Coordinator, partition_marker
from processors.stored import decode
from run_model import NodeStatus, RunStatus
from run_model.testing import EPOCH, build_ir, run_submitted, started, succeeded
from schemas.codec import decode_event, decode_task, encode_event
from schemas.envelope import Event
from schemas.tasks import NodeTask


class Broker:
    """A producer whose acknowledgements the test releases (or fails) when it likes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, topic: str, key: Any, value: Any, p: Any, t: Any, h: Any) -> Any:
        self.sent.append((topic, key, value, p))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack

    def ack_all(self, error: Exception | None = None) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_exception(error) if error else ack.set_result(None)


def coordinator(
    config: CoordinatorConfig | None = None,
) -> tuple[Coordinator, Broker, dict[bytes, bytes]]:
    broker = Broker()
    table: dict[bytes, bytes] = {partition_marker(0): b"0"}
    parts: Any = SimpleNamespace(app=SimpleNamespace(producer=broker), table=table, runs_topic=None)
    config = config or CoordinatorConfig()
    return Coordinator(parts, config, clock=lambda: EPOCH), broker, table


def record(event: Event, offset: int) -> tuple[bytes | None, bytes | None, tuple[int, int]]:
    key, value, _ = encode_event(event)
    return key, value, (0, offset)


def tasks_in(broker: Broker) -> list[NodeTask]:
    return [decode_task(v) for topic, _, v, _ in broker.sent if topic.startswith("aob.tasks.")]


async def test_a_batch_is_stepped_in_order_then_sent_and_acknowledged_once() -> None:
    c, broker, table = coordinator()
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    await _released(c.handle(*record(run_submitted("r1", ir), 0)), broker)
    (task_a,) = tasks_in(broker)
    broker.sent.clear()

    # One batch: a starts and succeeds, which schedules b: one state, two records.
    batch = [record(started(task_a), 1), record(succeeded(task_a, {"x": 1}), 2)]
    handling = asyncio.ensure_future(c.handle_batch(batch))
    await asyncio.sleep(0.01)
    assert not handling.done(), "nothing is stored before the broker acknowledges"
    assert [t.node_id for t in tasks_in(broker)] == ["b"]
    stored_before = decode(b"r1", table[b"r1"])
    assert stored_before.state.nodes["a"].status is NodeStatus.SCHEDULED  # as before the batch
    assert table[partition_marker(0)] == b"1"
    broker.ack_all()
    await handling
    state = decode(b"r1", table[b"r1"]).state
    assert state.nodes["a"].status is NodeStatus.SUCCEEDED
    assert state.nodes["b"].status is NodeStatus.SCHEDULED
    assert table[partition_marker(0)] == b"3"
    # Every decided event went to the run's own partition.
    runs_topic = c.config.runs_topic
    events = [decode_event(v) for topic, _, v, p in broker.sent if topic == runs_topic]
    assert {e.type for e in events} >= {"run.node_scheduled"}
    assert {p for topic, _, _, p in broker.sent if topic == runs_topic} == {0}


async def test_a_run_that_finishes_within_a_batch_is_stored_finished() -> None:
    c, broker, table = coordinator()
    ir = build_ir({"a": "noop"}, [])
    submitted = run_submitted("r2", ir)
    await _released(c.handle(*record(submitted, 0)), broker)
    (task_a,) = tasks_in(broker)
    done = succeeded(task_a, {})
    batch = [record(done, 1), record(done, 2)]  # a duplicate after the run completed
    await _released(c.handle_batch(batch), broker)
    assert decode(b"r2", table[b"r2"]).status is RunStatus.COMPLETED
    runs_topic = c.config.runs_topic
    events = [decode_event(v) for topic, _, v, _ in broker.sent if topic == runs_topic]
    completed = [e for e in events if e.type == "run.completed"]
    assert len(completed) == 1
    assert table[partition_marker(0)] == b"3"


async def test_a_failed_send_stores_nothing_and_the_batch_can_be_handled_again() -> None:
    c, broker, table = coordinator()
    ir = build_ir({"a": "noop"}, [])
    handling = asyncio.ensure_future(c.handle(*record(run_submitted("r3", ir), 0)))
    await asyncio.sleep(0.01)
    broker.ack_all(ConnectionError("broker gone"))
    with pytest.raises(ConnectionError):
        await handling
    assert b"r3" not in table and table[partition_marker(0)] == b"0"
    # Redelivered (faust did not acknowledge it): decided again, with the same ids.
    first = [v for _, _, v, _ in broker.sent]
    broker.sent.clear()
    await _released(c.handle(*record(run_submitted("r3", ir), 0)), broker)
    assert [v for _, _, v, _ in broker.sent] == first
    assert decode(b"r3", table[b"r3"]).state.status is RunStatus.RUNNING
    assert table[partition_marker(0)] == b"1"


async def test_the_decoded_states_kept_are_bounded_and_an_evicted_run_goes_on() -> None:
    c, broker, table = coordinator(CoordinatorConfig(state_cache=2))
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    for offset, run_id in enumerate(["r1", "r2", "r3"]):
        await _released(c.handle(*record(run_submitted(run_id, ir), offset)), broker)
    assert list(c._decoded) == [b"r2", b"r3"], "the least recently used run is dropped"
    tasks = {t.run_id: t for t in tasks_in(broker)}
    broker.sent.clear()

    # r1's state is read from the table again, decoded, and moves on as if it had been kept.
    await _released(c.handle(*record(succeeded(tasks["r1"], {}), 3)), broker)
    assert [(t.run_id, t.node_id) for t in tasks_in(broker)] == [("r1", "b")]
    assert decode(b"r1", table[b"r1"]).state.nodes["b"].status is NodeStatus.SCHEDULED
    assert list(c._decoded) == [b"r3", b"r1"]
    # A run used again becomes the most recently used.
    await _released(c.handle(*record(started(tasks["r3"]), 4)), broker)
    assert list(c._decoded) == [b"r1", b"r3"]

    none_kept, broker, _ = coordinator(CoordinatorConfig(state_cache=0))
    await _released(none_kept.handle(*record(run_submitted("r4", ir), 0)), broker)
    assert none_kept._decoded == {}
    assert [t.node_id for t in tasks_in(broker)] == ["a"]


async def _released(handling: Any, broker: Broker) -> None:
    task = asyncio.ensure_future(handling)
    while not task.done():
        broker.ack_all()
        await asyncio.sleep(0)
    await task
