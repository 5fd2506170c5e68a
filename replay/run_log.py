"""One run's history, read straight from the log: the source of truth, not a read model.

A run's events are the records of ``aob.runs.events`` keyed by its id. They all sit in one
partition: the command API's RunSubmitted picks it (Kafka's default partitioner on the key)
and every later event of the run follows it there (the coordinator writes to the partition
it read from). Reading a run is therefore one partition, filtered by key, from the moment
the run was created (when the caller knows it) or from the start.

Delivery is at least once, so the log may hold an event twice. ``seq`` numbers a run's
*distinct* events in log order, 1, 2, …, as the read side's ``run_events.seq`` does; a
duplicate keeps the seq of its first copy and is not returned again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_metadata import key_partition, topic_partitions
from replay.errors import PositionOutsideRun, RunNotInLog
from schemas.codec import decode_event
from schemas.envelope import Event
from schemas.errors import PoisonRecord
from schemas.position import Position
from schemas.topics import RUN_EVENTS

# Record timestamps are the producers' clocks; start this much before the run's creation.
CLOCK_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class Logged:
    """One of a run's events, where the log holds it."""

    seq: int
    position: Position
    event: Event


def run_partition(run_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``run_id`` (as producers do)."""
    return key_partition(run_id.encode(), partitions)


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
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            raise RunNotInLog(f"the log has no topic {topic!r}: is this the right cluster?")
        tp = TopicPartition(topic, run_partition(run_id, len(partitions)))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = 0
        if since is not None:
            found = await consumer.offsets_for_times(
                {tp: int((since - CLOCK_SLACK).timestamp() * 1000)}
            )
            start = found[tp].offset if found.get(tp) is not None else end
        consumer.seek(tp, start)
        key = run_id.encode()
        out: list[Logged] = []
        seen: set[str] = set()
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            for record in batches.get(tp, []):
                if record.offset >= end:
                    break
                if record.key != key:
                    continue
                try:
                    event = decode_event(record.value)
                except PoisonRecord:
                    continue  # dead-lettered by the coordinator; no part of the run's state
                if event.event_id in seen:
                    continue
                seen.add(event.event_id)
                where = Position(topic, tp.partition, record.offset)
                out.append(Logged(len(out) + 1, where, event))
    finally:
        await consumer.stop()
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
    if at.isdigit():
        seq = int(at)
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
