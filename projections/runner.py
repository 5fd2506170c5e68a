"""The projector process: Kafka in, Postgres out, offsets stored with the rows.

Projectors of one projection form a consumer group (``ProjectorConfig.group_id``): started
N times, they share the partitions, and one that dies leaves its partitions to the others.
The group only assigns partitions; offsets are never committed to Kafka. Where to read from
is ``projection_offsets``, written in the same transaction as the rows of each batch, and is
loaded for each partition as it is assigned. A crash therefore neither loses a batch nor
applies one twice; after any database fault (or a failed CAS write of a patched version's
blobs) the runner reloads the stored offsets and seeks back. A record whose data PostgreSQL
refuses is parked instead (``projections.parking``): one record never stops the read side.

A partition moves only between batches: the revocation waits for the batch being applied to
commit (``_Assignments``), so the next owner loads offsets that include it. Rows of one run
come from one partition (events are keyed by run), so two projectors never write one run.
That is what lets a projector remember the runs it wrote from their first event
(``projections.known_runs``); it forgets them all when partitions move, and after a fault.

A projector begins a batch at most every ``batch_every_s`` (``AOB_PROJECTIONS_BATCH_EVERY_MS``,
25 ms). A batch is a transaction, and each costs a handful of statements and a commit
whatever it holds: under a steady flow of events, a projector that took each fetch as it
came wrote batches of about ten records, and the read side's share of the CPU (the projector
and PostgreSQL's work for it) was the largest of the stack's after the coordinator's. Waiting
lets a batch gather what came meanwhile. An event after a quiet spell is written at once; a
backlog's batches take longer than the interval and never wait. Measured with chain3 runs
paced at 216 a second on 2 cores, 0 and 25 ms in turn (runs of 3,000, twelve each way in
three sittings): the projector's CPU fell from 3.6-4.4 s to 2.4-3.4 s and PostgreSQL's from
4.6-5.9 s to 3.7-5.1 s, the stack's by 1 to 4%. In the last sitting the coordinator's step
p99 was 53-72 ms with 0 and 27-76 ms with 25, and the projection lag p99 126-198 ms and
99-209 ms (52-139 ms and 101-125 ms in the first sitting). 10 ms saved about half as much
CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from infra.kafka_metadata import topic_partitions
from projections import metrics
from projections.batch import RawRecord
from projections.errors import BlobWriteFailed
from projections.known_runs import KnownRuns
from projections.parking import apply_or_park
from projections.version_blobs import JsonStore
from read_model.offsets import DEFAULT_PROJECTION, load_offsets
from read_model.schema import connect, ensure_schema
from schemas.topics import RUN_EVENTS, WORKFLOW_EVENTS

log = logging.getLogger(__name__)

TOPICS = (WORKFLOW_EVENTS, RUN_EVENTS)
DEFAULT_BATCH_EVERY_S = 0.025


def topics_with_prefix(prefix: str) -> tuple[str, ...]:
    """``<prefix>.workflows.events`` and ``<prefix>.runs.events``: topics of an isolated log."""
    return tuple(f"{prefix}.{t.removeprefix('aob.')}" for t in TOPICS)


@dataclass(frozen=True)
class ProjectorConfig:
    bootstrap: str
    dsn: str
    projection: str = DEFAULT_PROJECTION
    schema: str | None = None
    topics: tuple[str, ...] = TOPICS
    max_batch: int = 5000  # records per transaction
    batch_every_s: float = DEFAULT_BATCH_EVERY_S  # a batch begins at most this often (above)
    max_backoff_s: float = 10.0

    @property
    def group_id(self) -> str:
        """The consumer group of every projector of this projection, schema and log."""
        if self.schema is None and self.topics == TOPICS:
            return f"aob-projections-{self.projection}"
        return f"aob-projections-{self.projection}-{self.schema or ''}-{'+'.join(self.topics)}"


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions move between batches, and resume where ``projection_offsets`` says."""

    def __init__(self, projector: Projector, consumer: AIOKafkaConsumer) -> None:
        self._projector = projector
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._projector.applying:  # the batch under way commits first
            self._projector.known.forget()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._projector.applying:
            self._projector.known.forget()
            await self._projector.seek_stored(self._consumer, assigned)


class Projector:
    def __init__(self, config: ProjectorConfig, cas: JsonStore | None = None) -> None:
        self.config = config
        self.cas = cas  # where patched versions' definitions and IRs are stored
        self.applied_events = 0
        # Held while a batch is applied, and while assigned partitions seek: a partition
        # is never revoked in the middle of a batch (module doc).
        self.applying = asyncio.Lock()
        self.known = KnownRuns()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=self.config.group_id,
            client_id=f"aob-projections-{self.config.projection}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # the 500 ms default is pure lag when the log is quiet
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # A projector that died leaves its partitions to the others after this long.
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        await consumer.start()
        try:
            topics = await self._topics(consumer, stop)
            if not topics:
                return
            consumer.subscribe(topics, listener=_Assignments(self, consumer))
            delay = 0.2
            while not stop.is_set():
                try:
                    await self._project(consumer, stop)
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

    async def _topics(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> list[str]:
        while not stop.is_set():
            found = {t: await topic_partitions(consumer, t) for t in self.config.topics}
            if all(found.values()):
                return list(found)
            log.info("waiting for topics %s", [t for t, p in found.items() if not p])
            await _sleep_unless(stop, 1.0)
        return []  # stopped while waiting: nothing to read

    async def seek_stored(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> None:
        """Point ``partitions`` at the offsets stored with the rows (the start of the log for
        a partition never projected)."""
        if not partitions:
            return
        conn = await connect(self.config.dsn, self.config.schema)
        try:
            await ensure_schema(conn, self.config.schema)
            stored = await load_offsets(conn, self.config.projection)
        finally:
            await conn.close(timeout=5)
        for tp in partitions:
            if (tp.topic, tp.partition) in stored:
                consumer.seek(tp, stored[(tp.topic, tp.partition)])
            else:
                await consumer.seek_to_beginning(tp)

    async def _project(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        conn = await connect(self.config.dsn, self.config.schema)
        try:
            await ensure_schema(conn, self.config.schema)
            async with self.applying:  # after a fault: back to what was committed
                self.known.forget()  # a commit cut short may or may not have happened
                await self.seek_stored(consumer, list(consumer.assignment()))
            began = -math.inf
            while not stop.is_set():
                pause = pause_before_batch(began, self.config.batch_every_s, time.perf_counter())
                if pause > 0:  # what comes meanwhile joins the batch (module doc)
                    await _sleep_unless(stop, pause)
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.config.max_batch)
                if not fetched:
                    continue
                began = time.perf_counter()
                async with self.applying:
                    await self._apply(conn, consumer, fetched)
        finally:
            await conn.close(timeout=5)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
    ) -> None:
        # A partition revoked since the fetch is another projector's now: its records are
        # left to that one, which resumes from the offsets this one committed.
        owned = consumer.assignment()
        fetched = {tp: rs for tp, rs in fetched.items() if tp in owned}
        if not fetched:
            return
        started = time.perf_counter()
        records = [
            RawRecord(r.topic, r.partition, r.offset, r.value)
            for batch in fetched.values()
            for r in batch
        ]
        applied = await apply_or_park(conn, self.config.projection, records, self.cas, self.known)
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


def pause_before_batch(last_began: float, every_s: float, now: float) -> float:
    """How long to wait before fetching the next batch, for batches to begin at most every
    ``every_s`` (the last began at ``last_began``; -inf: none yet)."""
    return max(0.0, last_began + every_s - now)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
