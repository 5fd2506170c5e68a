"""The projector process: Kafka in, Postgres out, offsets stored with the rows.

No consumer group: the projector assigns itself every partition of the event topics and
seeks to the offsets stored in ``projection_offsets``, which are written in the same
transaction as the rows of each batch. A crash therefore neither loses a batch nor applies
one twice; after any database fault (or a failed CAS write of a patched version's blobs)
the runner reloads the stored offsets and seeks back. A record whose data PostgreSQL
refuses is parked instead (``projections.parking``): one record never stops the read side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from infra.kafka_metadata import topic_partitions
from projections import metrics
from projections.batch import RawRecord
from projections.errors import BlobWriteFailed
from projections.parking import apply_or_park
from projections.version_blobs import JsonStore
from read_model.offsets import DEFAULT_PROJECTION, load_offsets
from read_model.schema import connect, ensure_schema
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

log = logging.getLogger(__name__)

TOPICS = (WORKFLOW_EVENTS, RUN_EVENTS)


@dataclass(frozen=True)
class ProjectorConfig:
    bootstrap: str
    dsn: str
    projection: str = DEFAULT_PROJECTION
    schema: str | None = None
    topics: tuple[str, ...] = TOPICS
    max_batch: int = 5000  # records per transaction
    max_backoff_s: float = 10.0


class Projector:
    def __init__(self, config: ProjectorConfig, cas: JsonStore | None = None) -> None:
        self.config = config
        self.cas = cas  # where patched versions' definitions and IRs are stored
        self.applied_events = 0

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None,
            client_id=f"aob-projections-{self.config.projection}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # the 500 ms default is pure lag when the log is quiet
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, stop)
            consumer.assign(partitions)
            delay = 0.2
            while not stop.is_set():
                try:
                    await self._project(consumer, partitions, stop)
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    KafkaError,
                    BlobWriteFailed,
                ) as e:
                    log.warning("projection interrupted, resuming from stored offsets: %s", e)
                    await _sleep_unless(stop, delay)
                    delay = min(delay * 2, self.config.max_backoff_s)
                else:
                    delay = 0.2
        finally:
            await consumer.stop()

    async def _partitions(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[TopicPartition]:
        while not stop.is_set():
            found = {t: await topic_partitions(consumer, t) for t in self.config.topics}
            if all(found.values()):
                return [TopicPartition(t, p) for t, ps in found.items() for p in ps]
            log.info("waiting for topics %s", [t for t, p in found.items() if not p])
            await _sleep_unless(stop, 1.0)
        return []  # stopped while waiting: nothing to assign

    async def _project(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], stop: asyncio.Event
    ) -> None:
        conn = await connect(self.config.dsn, self.config.schema)
        try:
            await ensure_schema(conn, self.config.schema)
            stored = await load_offsets(conn, self.config.projection)
            for tp in partitions:
                if (tp.topic, tp.partition) in stored:
                    consumer.seek(tp, stored[(tp.topic, tp.partition)])
                else:
                    await consumer.seek_to_beginning(tp)
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.config.max_batch)
                if not fetched:
                    continue
                started = time.perf_counter()
                records = [
                    RawRecord(r.topic, r.partition, r.offset, r.value)
                    for batch in fetched.values()
                    for r in batch
                ]
                applied = await apply_or_park(conn, self.config.projection, records, self.cas)
                self.applied_events += applied.new_events
                self._measure(consumer, fetched, applied.new_events, applied.poison, started)
                log.debug(
                    "batch of %d: %d new, %d seen, %d poison, %d runs, %.1f ms",
                    len(records),
                    applied.new_events,
                    applied.duplicates,
                    applied.poison,
                    len(applied.runs_changed),
                    (time.perf_counter() - started) * 1000,
                )
        finally:
            await conn.close(timeout=5)

    def _measure(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
        new_events: int,
        parked: int,
        started: float,
    ) -> None:
        name = self.config.projection
        records = sum(len(rs) for rs in fetched.values())
        metrics.RECORDS.labels(name).inc(records)
        metrics.EVENTS.labels(name).inc(new_events)
        metrics.PARKED.labels(name).inc(parked)
        metrics.BATCH_RECORDS.labels(name).observe(records)
        metrics.BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        for tp, rs in fetched.items():
            end = consumer.highwater(tp)
            if end is not None and rs:
                lag = max(0, end - (rs[-1].offset + 1))
                metrics.LAG.labels(name, tp.topic, str(tp.partition)).set(lag)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
