"""Rebuilding a projection's read models from the start of the log, then swapping them in.

The rebuild runs the live projector's own code (``apply_or_park``) into a
fresh schema, ``aob_rebuild_<hex>``, so the read models it makes are by construction the
ones the live projector would make from the same log. The live tables stay untouched (and
keep answering queries) until one short transaction swaps the rebuilt tables in:

1. One rebuild at a time (a session advisory lock); schemas left by a rebuild that crashed
   are dropped first.
2. Every partition of the projection's topics is read from its start up to the end offsets
   taken at the start, batch by batch, as the live projector reads them.
3. The rebuild catches up with the live projection's stored offsets (without any lock)
   until little is left.
4. The swap, in ONE transaction: the live schema's batch lock (the live projector is now
   between two batches), the live stored offsets read under it, the last few records
   applied to the rebuilt tables, then every live read-model table moved out to
   ``aob_retired_<hex>`` and every rebuilt one moved in (``ALTER TABLE … SET SCHEMA``
   keeps indexes and constraints), and a NOTIFY so read-your-writes waiters look again.
   The retired tables are dropped after the commit.

After the swap the live projector goes on from its positions in memory, which are its old
stored offsets and so at most the rebuilt ones: it re-reads some records whose events are
already in the rebuilt ``run_events`` / ``workflow_events``, and ``apply_batch`` skips those
by event id with all their effects (poison by position; offsets only move forward).

A failure or an interrupt before the commit leaves the live tables as they were; the
half-built schema is dropped on the way out, or by the next rebuild if the process died.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_metadata import topic_partitions
from projections.batch import RawRecord
from projections.parking import apply_or_park
from projections.runner import TOPICS
from projections.version_blobs import JsonStore
from read_model.channels import PROGRESS_CHANNEL
from read_model.offsets import DEFAULT_PROJECTION, Key, load_offsets
from read_model.schema import check_schema_name, connect, ensure_schema, lock_batches, quoted
from replay.dump import tables_of
from replay.errors import RebuildFailed

# The projections a rebuild knows, and the topics each reads.
PROJECTIONS: dict[str, tuple[str, ...]] = {DEFAULT_PROJECTION: TOPICS}

REBUILD_PREFIX = "aob_rebuild_"
RETIRED_PREFIX = "aob_retired_"
# A one-part (bigint) key: the batch locks use two-part keys, a space it cannot meet.
REBUILD_LOCK_KEY = 0x0A0B_0002
# The swap waits at most this long for a table's readers, then gives way and tries again:
# shorter than Postgres's deadlock_timeout (1 s), so a reader never loses a deadlock to it.
SWAP_LOCK_TIMEOUT_MS = 200
SWAP_ATTEMPTS = 50
# The swap is attempted once the unlocked catch-up has this many records or fewer to read:
# the live projector waits for the rest only.
SMALL_GAP = 2000
# Relation kinds a swap moves with their tables: tables, indexes, owned sequences.
_MOVABLE = frozenset("rpiIS")


@dataclass(frozen=True)
class RebuildConfig:
    bootstrap: str
    dsn: str
    projection: str = DEFAULT_PROJECTION
    live_schema: str | None = None  # the schema of the live tables (None: the default one)
    max_batch: int = 5000  # records per transaction, as the live projector


@dataclass
class Progress:
    """How far a rebuild is: what the progress bar shows."""

    records: int = 0  # records read
    total: int = 0  # records to read (up to the log end at the start, then what catch-up adds)
    events: int = 0  # distinct events applied
    stage: str = "reading the log"


@dataclass(frozen=True)
class Rebuilt:
    """What a finished rebuild did."""

    projection: str
    events: int
    records: int
    seconds: float
    schema: str  # the live schema, which now holds the rebuilt tables
    tables: tuple[str, ...]
    leftovers: tuple[str, ...] = ()  # schemas of an earlier, crashed rebuild, dropped
    kept: str | None = None  # why the retired tables could not be dropped, if so

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "events": self.events,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
            "schema": self.schema,
            "tables": list(self.tables),
            "swapped": True,
        }


def topics_of(projection: str) -> tuple[str, ...]:
    """The topics ``projection`` reads; RebuildFailed naming the known ones otherwise."""
    try:
        return PROJECTIONS[projection]
    except KeyError:
        known = ", ".join(sorted(PROJECTIONS))
        raise RebuildFailed(f"no projection named {projection!r}; known: {known}") from None


def schema_names(token: str) -> tuple[str, str]:
    """(rebuild schema, retired schema) of one rebuild."""
    return check_schema_name(REBUILD_PREFIX + token), check_schema_name(RETIRED_PREFIX + token)


def behind(positions: Mapping[Key, int], targets: Mapping[Key, int]) -> dict[Key, int]:
    """The partitions whose position is short of its target, with how many records."""
    return {
        k: target - positions.get(k, 0)
        for k, target in targets.items()
        if positions.get(k, 0) < target
    }


def swap_statements(
    live: str, rebuilt: str, retired: str, tables: Iterable[str], live_tables: Iterable[str]
) -> list[str]:
    """The DDL of a swap: every live table of the rebuilt set out to ``retired``, then every
    rebuilt table in. All live ones move out first, so no index name is ever taken twice."""
    moving = sorted(tables)
    out = sorted(set(live_tables) & set(moving))
    q = quoted
    return [
        f"CREATE SCHEMA {q(retired)}",
        *(f"ALTER TABLE {q(live)}.{q(t)} SET SCHEMA {q(retired)}" for t in out),
        *(f"ALTER TABLE {q(rebuilt)}.{q(t)} SET SCHEMA {q(live)}" for t in moving),
    ]


@dataclass(frozen=True)
class _Schemas:
    live: str  # the live read models
    rebuilt: str  # where the rebuild writes (aob_rebuild_<hex>)
    retired: str  # where the swap moves the live tables (aob_retired_<hex>)


class _TablesBusy(Exception):
    """The swap could not lock the tables in time: roll back and try again."""


@dataclass
class _Log:
    """The projection's topics, read from their start into the rebuild schema."""

    consumer: AIOKafkaConsumer
    conn: asyncpg.Connection
    config: RebuildConfig
    cas: JsonStore | None
    progress: Progress
    report: Callable[[Progress], None]
    partitions: dict[Key, TopicPartition] = field(default_factory=dict)
    positions: dict[Key, int] = field(default_factory=dict)

    async def start(self, topics: tuple[str, ...]) -> dict[Key, int]:
        """Assign every partition from its start; the end offsets now, as targets."""
        for topic in topics:
            found = await topic_partitions(self.consumer, topic)
            if not found:
                raise RebuildFailed(f"the log has no topic {topic!r}: is the stack up (aob up)?")
            for p in found:
                self.partitions[(topic, p)] = TopicPartition(topic, p)
        tps = list(self.partitions.values())
        self.consumer.assign(tps)
        begins = await self.consumer.beginning_offsets(tps)
        ends = await self.consumer.end_offsets(tps)
        for key, tp in self.partitions.items():
            self.consumer.seek(tp, begins[tp])
            self.positions[key] = begins[tp]
        self.progress.total = sum(ends[tp] - begins[tp] for tp in tps)
        return {key: ends[tp] for key, tp in self.partitions.items()}

    async def read_until(self, targets: Mapping[Key, int]) -> int:
        """Apply batches until every partition is at (or past) its target; records read."""
        unknown = sorted(set(targets) - set(self.partitions))
        if unknown:
            raise RebuildFailed(
                f"the live projection has offsets for partitions the rebuild does not read "
                f"({unknown}): did a topic grow? Run the rebuild again"
            )
        read = 0
        while late := behind(self.positions, targets):
            tps = [self.partitions[k] for k in late]
            fetched = await self.consumer.getmany(
                *tps, timeout_ms=500, max_records=self.config.max_batch
            )
            records = [
                RawRecord(r.topic, r.partition, r.offset, r.value)
                for rs in fetched.values()
                for r in rs
            ]
            if records:
                applied = await apply_or_park(self.conn, self.config.projection, records, self.cas)
                read += len(records)
                self.progress.records += len(records)
                self.progress.events += applied.new_events
            for key in late:
                # The consumer's position, not the last record's offset + 1: it also steps
                # over offsets that hold no record (transaction markers).
                self.positions[key] = await self.consumer.position(self.partitions[key])
            self.progress.total = max(self.progress.total, self.progress.records)
            self.report(self.progress)
        return read


async def rebuild(
    config: RebuildConfig,
    cas: JsonStore | None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Rebuilt:
    """Rebuild ``config.projection`` from the log and swap it in for the live tables.

    ``cas`` receives patched versions' blobs, as from the live projector (writes are
    idempotent). RebuildFailed says why a rebuild stopped; the live tables are then as they
    were. Connection faults (OSError, asyncpg and aiokafka errors) pass through as such.
    """
    topics = topics_of(config.projection)
    progress = Progress()
    report = on_progress or (lambda _: None)
    started = time.perf_counter()
    guard = await asyncpg.connect(config.dsn, server_settings={"application_name": "aob-replay"})
    try:
        if not await guard.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK_KEY):
            raise RebuildFailed("another rebuild is running; wait for it to finish")
        leftovers = await drop_leftovers(guard)
        live = await _live_schema(guard, config.live_schema)
        schemas = _Schemas(live, *schema_names(secrets.token_hex(4)))
        try:
            tables = await _build(
                config,
                cas=cas,
                topics=topics,
                guard=guard,
                schemas=schemas,
                progress=progress,
                report=report,
            )
        except BaseException:
            # Ctrl-C, a fault, anything: the live tables are as they were; drop the rest.
            await _drop_quietly(config.dsn, schemas.rebuilt)
            raise
        seconds = time.perf_counter() - started
        kept = None
        try:
            await _drop_schema(guard, schemas.retired)
            await _drop_schema(guard, schemas.rebuilt)
        except asyncpg.PostgresError as e:
            # Something outside the read models depends on an old table: keep it, say so.
            kept = f"the old tables stay in schema {schemas.retired}: {e}"
        return Rebuilt(
            projection=config.projection,
            events=progress.events,
            records=progress.records,
            seconds=seconds,
            schema=live,
            tables=tuple(tables),
            leftovers=tuple(leftovers),
            kept=kept,
        )
    finally:
        await guard.close(timeout=5)


async def _build(
    config: RebuildConfig,
    *,
    cas: JsonStore | None,
    topics: tuple[str, ...],
    guard: asyncpg.Connection,
    schemas: _Schemas,
    progress: Progress,
    report: Callable[[Progress], None],
) -> list[str]:
    """Steps 2 to 4: read, catch up, swap. The rebuilt tables' names once swapped."""
    conn = await connect(config.dsn, schemas.rebuilt)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap,
        group_id=None,
        client_id=f"aob-replay-{config.projection}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await ensure_schema(conn, schemas.rebuilt)
        await _check_movable(guard, schemas.rebuilt)
        await consumer.start()
        log = _Log(consumer, conn, config, cas, progress, report)
        ends = await log.start(topics)
        report(progress)
        await log.read_until(ends)
        progress.stage = "catching up"
        # Unlocked: the live projector may run ahead meanwhile; go on until little is left.
        while True:
            targets = await load_offsets(guard, config.projection, schemas.live)
            gap = sum(behind(log.positions, targets).values())
            progress.total = progress.records + gap
            if gap <= SMALL_GAP:
                break
            await log.read_until(targets)
        progress.stage = "swapping"
        report(progress)
        return await _swap(guard, log, schemas)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)


async def _swap(guard: asyncpg.Connection, log: _Log, schemas: _Schemas) -> list[str]:
    live, rebuilt, retired = schemas.live, schemas.rebuilt, schemas.retired
    for attempt in range(SWAP_ATTEMPTS):
        try:
            async with guard.transaction():
                # The live projector is between two batches from here to the commit.
                await lock_batches(guard, live)
                await log.read_until(await load_offsets(guard, log.config.projection, live))
                tables = await tables_of(guard, rebuilt)
                live_tables = await tables_of(guard, live)
                moving = [f"{quoted(rebuilt)}.{quoted(t)}" for t in tables] + [
                    f"{quoted(live)}.{quoted(t)}" for t in tables if t in live_tables
                ]
                await guard.execute(f"SET LOCAL lock_timeout = {SWAP_LOCK_TIMEOUT_MS}")
                try:
                    await guard.execute(f"LOCK TABLE {', '.join(moving)} IN ACCESS EXCLUSIVE MODE")
                except asyncpg.LockNotAvailableError as e:
                    raise _TablesBusy from e
                await guard.execute("SET LOCAL lock_timeout = 0")
                for statement in swap_statements(live, rebuilt, retired, tables, live_tables):
                    await guard.execute(statement)
                # Delivered at commit: waiters on a position look at the new offsets.
                await guard.execute(
                    "SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, log.config.projection
                )
            return tables
        except _TablesBusy:
            # Readers held a table longer than the swap may wait: let them finish first.
            await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
    raise RebuildFailed(
        f"the live tables stayed busy through {SWAP_ATTEMPTS} attempts to swap; "
        "the live read models are unchanged: run the rebuild again"
    )


async def drop_leftovers(conn: asyncpg.Connection) -> list[str]:
    """Drop the schemas of earlier rebuilds that did not finish (call it holding the rebuild
    lock, so none of them is still being written); their names."""
    names = [
        r["nspname"]
        for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)"
            " OR starts_with(nspname, $2) ORDER BY nspname",
            REBUILD_PREFIX,
            RETIRED_PREFIX,
        )
    ]
    for name in names:
        await _drop_schema(conn, name)
    return names


async def _live_schema(conn: asyncpg.Connection, configured: str | None) -> str:
    if configured is None:
        name: str | None = await conn.fetchval("SELECT current_schema()")
        if name is None:
            raise RebuildFailed("the database has no default schema (check search_path)")
        return name
    name = check_schema_name(configured)
    if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", name):
        raise RebuildFailed(f"the live schema {name!r} does not exist")
    return name


async def _check_movable(conn: asyncpg.Connection, schema: str) -> None:
    """Refuse before any work if schema.sql makes something a swap cannot move (a view, a
    function): it would stay behind, bound to the retired tables."""
    odd = await conn.fetch(
        """SELECT c.relname AS name, c.relkind::text AS kind
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND NOT (c.relkind::text = ANY($2::text[]))
           UNION ALL
           SELECT p.proname, 'function' FROM pg_proc p JOIN pg_namespace n
             ON n.oid = p.pronamespace WHERE n.nspname = $1""",
        schema,
        sorted(_MOVABLE),
    )
    if odd:
        found = ", ".join(f"{r['name']} ({r['kind']})" for r in odd)
        raise RebuildFailed(f"schema.sql creates objects a swap cannot move: {found}")


async def _drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Drop ``schema`` and its tables, but nothing outside it (no CASCADE): an object
    elsewhere that depends on one of its tables makes this fail instead of vanishing."""
    tables = await tables_of(conn, schema)
    async with conn.transaction():
        if tables:
            await conn.execute(
                "DROP TABLE " + ", ".join(f"{quoted(schema)}.{quoted(t)}" for t in tables)
            )
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted(schema)}")


async def _drop_quietly(dsn: str, schema: str) -> None:
    # A fresh connection: the rebuild's own may be mid-statement (interrupted). Should this
    # fail too, the next rebuild drops the schema (drop_leftovers).
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(dsn)
        try:
            await _drop_schema(conn, schema)
        finally:
            await conn.close(timeout=5)
