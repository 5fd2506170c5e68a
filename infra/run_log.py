"""One run's records, read straight from the log: the source of truth, not a read model.

A run's events are the records of ``aob.runs.events`` keyed by its id. They all sit in one
partition: the command API's RunSubmitted picks it (Kafka's default partitioner on the key)
and every later event of the run follows it there (the coordinator writes to the partition
it read from). Reading a run is therefore one partition, filtered by key, from a point the
reader knows (the run's creation, a position it was given) or from the start.

Every reader here opens a consumer of its own and assigns the partition by hand: no group,
nothing committed, it only looks. ``read_run`` takes a run's history up to the end of the log
now (the command API's forks, ``aob runs show --at``); ``RunPartition.records`` without an end
follows the partition as it grows (the agent's verdict watcher waits there for the
coordinator's answer to a patch).

Delivery is at least once, so the log may hold an event twice. ``seq`` numbers a run's
*distinct* events in log order, 1, 2, …, as the read side's ``run_events.seq`` does; a
duplicate keeps the seq of its first copy and is not returned again.

RunLogError (a LookupError: what was looked for is not in the log)
├── RunNotInLog          the log holds no event (or no topic) of the run asked for
└── PositionOutsideRun   ``--at`` names no point of the run's history
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka_metadata import key_partition, topic_partitions
from schemas.codec import decode_event
from schemas.envelope import Event
from schemas.errors import PoisonRecord
from schemas.position import Position
from schemas.topics import RUN_EVENTS

# Record timestamps are the producers' clocks; start this much before the run's creation.
CLOCK_SLACK = timedelta(seconds=60)


class RunLogError(LookupError):
    """Root of the errors of reading a run from the log; the message says what to do."""


class RunNotInLog(RunLogError):
    pass


class PositionOutsideRun(RunLogError):
    pass


@dataclass(frozen=True)
class Logged:
    """One of a run's events, where the log holds it."""

    seq: int
    position: Position
    event: Event


def run_partition(run_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``run_id`` (as producers do)."""
    return key_partition(run_id.encode(), partitions)


def run_event(record: ConsumerRecord) -> Event | None:
    """The event a record of the run holds; None for a poison record, which the coordinator
    dead-letters: it is no part of the run's state, and not a reader's to judge."""
    try:
        return decode_event(record.value)
    except PoisonRecord:
        return None


class RunPartition:
    """The partition of a topic that holds one run's records, and the consumer assigned to it."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition, run_id: str) -> None:
        self.consumer = consumer
        self.tp = tp
        self._key = run_id.encode()

    async def beginning(self) -> int:
        return int((await self.consumer.beginning_offsets([self.tp]))[self.tp])

    async def end(self) -> int:
        """The offset the next record appended will get."""
        return int((await self.consumer.end_offsets([self.tp]))[self.tp])

    async def offset_since(self, when: datetime) -> int | None:
        """The first offset of a record stamped at or after ``when`` (None: none yet)."""
        ms = max(int(when.timestamp() * 1000), 0)
        found = (await self.consumer.offsets_for_times({self.tp: ms})).get(self.tp)
        return None if found is None else int(found.offset)

    async def records(
        self, start: int, end: int | None = None
    ) -> AsyncGenerator[ConsumerRecord, None]:
        """The run's records from offset ``start`` on (other runs' are skipped by key): up to
        ``end`` (exclusive), or without one for as long as the caller reads, as they are
        appended (each poll waits in the broker until records come or a second passes)."""
        self.consumer.seek(self.tp, start)
        while end is None or await self.consumer.position(self.tp) < end:
            batches = await self.consumer.getmany(self.tp, timeout_ms=1000, max_records=5000)
            for record in batches.get(self.tp, ()):
                if end is not None and record.offset >= end:
                    return
                if record.key == self._key:
                    yield record


@asynccontextmanager
async def open_run_partition(
    bootstrap: str,
    run_id: str,
    *,
    topic: str = RUN_EVENTS,
    partition: int | None = None,
    client_id: str | None = None,
) -> AsyncIterator[RunPartition]:
    """A consumer of its own on the partition of ``topic`` that holds ``run_id``: the one
    given, or where the producers put the run's key. RunNotInLog if the topic does not exist.
    """
    options: dict[str, Any] = {"client_id": client_id} if client_id else {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,  # a long poll: the broker answers as soon as data comes
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **options,
    )
    try:
        await consumer.start()
        if partition is None:
            partitions = await topic_partitions(consumer, topic)
            if not partitions:
                raise RunNotInLog(f"the log has no topic {topic!r}: is this the right cluster?")
            partition = run_partition(run_id, len(partitions))
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        yield RunPartition(consumer, tp, run_id)
    finally:
        await consumer.stop()


async def read_run(
    bootstrap: str,
    run_id: str,
    *,
    since: datetime | None = None,
    topic: str = RUN_EVENTS,
) -> list[Logged]:
    """Every distinct event of ``run_id`` in log order, up to the end of the log now.

    ``since`` (the run's creation time, if known) lets the read skip the partition's older
    records. RunNotInLog if the log has no event of the run.
    """
    out: list[Logged] = []
    async with open_run_partition(bootstrap, run_id, topic=topic) as run:
        end = await run.end()
        start = 0
        if since is not None:
            found = await run.offset_since(since - CLOCK_SLACK)
            start = found if found is not None else end
        seen: set[str] = set()
        async for record in run.records(start, end):
            event = run_event(record)
            if event is None or event.event_id in seen:
                continue
            seen.add(event.event_id)
            where = Position(topic, run.tp.partition, record.offset)
            out.append(Logged(len(out) + 1, where, event))
    if not out:
        raise RunNotInLog(f"the log has no event of run {run_id!r}")
    return out


def until(history: list[Logged], at: str) -> list[Logged]:
    """The events of ``history`` up to and including ``at``: a seq (``7``: the run's first 7
    events) or a log position token (``aob.runs.events:3:1042``: every event of the run at or
    before that offset). PositionOutsideRun, with the valid range, for anything else."""
    if not history:
        return []
    first, last = history[0], history[-1]
    span = (
        f"the run has {len(history)} events: give a seq from 1 to {len(history)}, or a "
        f"position from {first.position.token()} to {last.position.token()}"
    )
    if at.isascii() and at.isdigit():  # not "²": isdigit() takes it, int() does not
        seq = int(at) if len(at) <= 18 else 0  # 0: outside, and int() refuses 4,300 digits
        if not 1 <= seq <= len(history):
            raise PositionOutsideRun(f"--at {at} is outside the run's history; {span}")
        return history[:seq]
    try:
        position = Position.parse(at)
    except ValueError as e:
        raise PositionOutsideRun(f"{e}; {span}") from e
    if (position.topic, position.partition) != (first.position.topic, first.position.partition):
        raise PositionOutsideRun(
            f"position {at} is not in the run's partition "
            f"({first.position.topic}:{first.position.partition}); {span}"
        )
    if position.offset < first.position.offset:
        raise PositionOutsideRun(f"position {at} is before the run was submitted; {span}")
    return [e for e in history if e.position.offset <= position.offset]
