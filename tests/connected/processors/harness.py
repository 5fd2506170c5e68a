"""Playing client and worker for an isolated coordinator: read its run topic, answer its tasks.

``FakeWorker`` answers every task of the runs it is given with ``answer(task)`` (by default
NodeStarted then NodeSucceeded), so a test can script failures, silences and late answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from run_model.testing import build_ir, run_submitted, started, succeeded
from schemas.codec import decode_event, decode_task, encode_event
from schemas.envelope import Event, utcnow
from schemas.errors import PoisonRecord
from schemas.events import NodeScheduled, RunCompleted
from schemas.ir import WorkflowIR
from schemas.tasks import NodeTask
from tests.connected.isolated import TASK_TYPES_USED, Isolated

Answer = Callable[[NodeTask], list[Event]]


def succeed(task: NodeTask) -> list[Event]:
    return [started(task), succeeded(task, {"node": task.node_id})]


class Background:
    """Works in a task of its own from ``async with`` until the block ends."""

    _task: asyncio.Task[None] | None = None

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RunLog(Background):
    """Every event of the run topic, by run, with the record's timestamp (ms)."""

    _consumer: AIOKafkaConsumer

    def __init__(self, iso: Isolated) -> None:
        self.iso = iso
        self.by_run: dict[str, list[tuple[Event, int]]] = defaultdict(list)
        self.positions: dict[str, tuple[int, int]] = {}  # event id -> (partition, offset)

    async def __aenter__(self) -> RunLog:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.iso.settings.kafka_bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        parts = [
            TopicPartition(self.iso.config.runs_topic, p)
            for p in range(self.iso.settings.topic_partitions)
        ]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        self._consumer = consumer
        self._task = asyncio.create_task(self._read(consumer))
        return self

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        try:
            async for record in consumer:
                with contextlib.suppress(PoisonRecord):
                    ev = decode_event(record.value)
                    self.by_run[ev.aggregate_id].append((ev, record.timestamp))
                    self.positions[ev.event_id] = (record.partition, record.offset)
        finally:
            await consumer.stop()

    def events(self, run_id: str) -> list[Event]:
        return [ev for ev, _ in self.by_run.get(run_id, [])]

    async def read_to_end(self, partition: int) -> None:
        """Raises until this log has read ``partition`` up to its end now (poison records and
        transaction markers included: the position passes them). Polled with eventually."""
        tp = TopicPartition(self.iso.config.runs_topic, partition)
        end = await end_offset(self.iso, tp)
        # Records are taken into ``by_run`` as soon as the consumer returns them (no await in
        # between), so its position never runs ahead of what ``events`` shows.
        at = await self._consumer.position(tp)
        assert at >= end, f"read up to {at}, the partition ends at {end}"


class FakeWorker(Background):
    """Answers the tasks of our runs with ``answer(task)``: the events a worker would send."""

    def __init__(
        self,
        iso: Isolated,
        producer: AIOKafkaProducer,
        run_ids: set[str],
        answer: Answer = succeed,
    ) -> None:
        self.iso = iso
        self.producer = producer
        self.run_ids = run_ids
        self.answer = answer
        self.tasks_seen: list[Any] = []

    async def __aenter__(self) -> FakeWorker:
        consumer = AIOKafkaConsumer(
            *[self.iso.config.task_topic(t) for t in TASK_TYPES_USED],
            bootstrap_servers=self.iso.settings.kafka_bootstrap,
            group_id=f"test-worker-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._work(consumer))
        return self

    async def _work(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                acks = []
                for records in batches.values():
                    for record in records:
                        task = decode_task(record.value)
                        if task.run_id not in self.run_ids:
                            continue
                        self.tasks_seen.append(task)
                        for report in self.answer(task):
                            # Stamped now, as a worker would: deadlines count from it.
                            ev = report.model_copy(update={"occurred_at": utcnow()})
                            key, value, headers = encode_event(ev)
                            acks.append(
                                await self.producer.send(
                                    self.iso.config.runs_topic, value, key=key, headers=headers
                                )
                            )
                if acks:
                    await asyncio.gather(*acks)
        finally:
            await consumer.stop()


def fan_out_fan_in() -> WorkflowIR:
    return build_ir(
        {"start": "noop", "left": "transform", "right": "transform", "join": "noop"},
        [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")],
    )


async def submit(iso: Isolated, producer: AIOKafkaProducer, run_id: str, ir: WorkflowIR) -> None:
    key, value, headers = encode_event(run_submitted(run_id, ir, {"n": 1}))
    await producer.send_and_wait(iso.config.runs_topic, value, key=key, headers=headers)


def assert_completed_once_each(log: RunLog, run_id: str, ir: WorkflowIR) -> None:
    events = log.events(run_id)
    assert events, "no event of the run"
    assert isinstance(events[-1], RunCompleted), [e.type for e in events]
    scheduled = [e.payload.node_id for e in events if isinstance(e, NodeScheduled)]
    # Decisions may be re-sent after a crash, under the same ids: count distinct ids.
    distinct = {e.event_id: e.payload.node_id for e in events if isinstance(e, NodeScheduled)}
    assert sorted(distinct.values()) == sorted(ir.nodes), scheduled


async def append(iso: Isolated, producer: AIOKafkaProducer, ev: Event) -> tuple[int, int]:
    """Append ``ev`` to the isolated run topic, stamped now; returns (partition, offset)."""
    key, value, headers = encode_event(ev.model_copy(update={"occurred_at": utcnow()}))
    meta = await producer.send_and_wait(iso.config.runs_topic, value, key=key, headers=headers)
    return meta.partition, meta.offset


async def committed_past(iso: Isolated, partition: int, offset: int) -> None:
    """Raises until the coordinator's consumer group has committed past ``offset``: it has
    handled that record and everything before it on the partition. Polled with eventually."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=iso.settings.kafka_bootstrap,
        group_id=iso.config.app_id,
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        done = await reader.committed(TopicPartition(iso.config.runs_topic, partition))
    finally:
        await reader.stop()
    assert done is not None and done > offset, f"committed {done}, waiting for > {offset}"


async def end_offset(iso: Isolated, tp: TopicPartition) -> int:
    reader = AIOKafkaConsumer(bootstrap_servers=iso.settings.kafka_bootstrap)
    await reader.start()
    try:
        return int((await reader.end_offsets([tp]))[tp])
    finally:
        await reader.stop()


async def settled(iso: Isolated, log: RunLog, run_id: str) -> None:
    """Raises until all the coordinator decided about the run is in ``log``: it has committed
    past the run's last event, so it has handled every record of the run, and it sends and
    waits for the ack of a decision before it commits past its cause; and ``log`` has read the
    partition to its end after that. A decision made twice would show by then. Polled with
    eventually."""
    partition, offset = log.positions[log.events(run_id)[-1].event_id]
    await committed_past(iso, partition, offset)
    await log.read_to_end(partition)


def of_type(events: list[Event], kind: type[Event], node_id: str | None = None) -> list[Any]:
    return [
        e
        for e in events
        if isinstance(e, kind)
        and (node_id is None or getattr(e.payload, "node_id", None) == node_id)
    ]
