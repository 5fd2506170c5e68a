"""The end of the log, and what is appended to it: ``aob events tail``.

Reads the event topics directly, without a consumer group (nothing is committed, nothing is
taken from another reader): the last records of every partition, merged by time, then every
record as it arrives. With a run, only that run's partition, filtered by its key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka_metadata import topic_partitions
from infra.run_log import run_partition
from schemas.codec import decode_event
from schemas.envelope import Event
from schemas.errors import PoisonRecord
from schemas.position import Position
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

EVENT_TOPICS = (WORKFLOW_EVENTS, RUN_EVENTS)


@dataclass(frozen=True)
class Tailed:
    """One record of an event topic: its event, or why it could not be read."""

    position: Position
    at: datetime  # the record's timestamp (the producer's clock)
    key: str
    event: Event | None
    problem: str | None = None


def _tailed(record: ConsumerRecord) -> Tailed:
    position = Position(record.topic, record.partition, record.offset)
    at = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
    key = record.key.decode(errors="replace") if record.key else ""
    try:
        return Tailed(position, at, key, decode_event(record.value))
    except PoisonRecord as e:
        return Tailed(position, at, key, None, e.reason)


class LogTail:
    """``async with LogTail(bootstrap, run_id=...) as tail``: ``last(n)``, then ``follow()``."""

    def __init__(self, bootstrap: str, run_id: str | None = None) -> None:
        self.run_id = run_id
        self._key = run_id.encode() if run_id else None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._partitions: list[TopicPartition] = []
        self._ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> LogTail:
        await self._consumer.start()
        try:
            for topic in (RUN_EVENTS,) if self.run_id else EVENT_TOPICS:
                found = await topic_partitions(self._consumer, topic)
                if self.run_id and found:
                    found = [run_partition(self.run_id, len(found))]
                self._partitions += [TopicPartition(topic, p) for p in found]
            self._consumer.assign(self._partitions)
            self._ends = await self._consumer.end_offsets(self._partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    async def last(self, n: int) -> list[Tailed]:
        """The last ``n`` records (of the run, with one) up to the end of the log now, oldest
        first. A run's whole partition is read, since its records are interleaved."""
        starts = await self._consumer.beginning_offsets(self._partitions)
        out: list[Tailed] = []
        for tp in self._partitions:
            end = self._ends[tp]
            start = starts[tp] if self._key else max(starts[tp], end - n)
            self._consumer.seek(tp, start)
            while await self._consumer.position(tp) < end:
                batches = await self._consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                out += [_tailed(r) for r in batches.get(tp, []) if r.offset < end and self._ours(r)]
            self._consumer.seek(tp, end)
        out.sort(key=lambda t: (t.at, t.position))
        return out[-n:] if n > 0 else []

    async def follow(self) -> AsyncIterator[Tailed]:
        """Every record appended from the end of ``last`` on, as it arrives (forever)."""
        for tp in self._partitions:
            self._consumer.seek(tp, self._ends[tp])
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=1000)
            records = [r for rs in batches.values() for r in rs if self._ours(r)]
            for record in sorted(records, key=lambda r: r.timestamp):
                yield _tailed(record)

    def _ours(self, record: ConsumerRecord) -> bool:
        return self._key is None or record.key == self._key
