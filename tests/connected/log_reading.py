"""Reading ``aob.runs.events`` without a consumer group: following what is appended, and
counting a set of runs' records and distinct event ids from the start of the log."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka_metadata import topic_partitions
from schemas.codec import HEADER_EVENT_ID, HEADER_TYPE
from schemas.topics import DLQ, RUN_EVENTS


async def run_partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    return [TopicPartition(RUN_EVENTS, p) for p in await topic_partitions(consumer, RUN_EVENTS)]


@dataclass
class Seen:
    at: float  # the producer's timestamp, seconds since the epoch
    type: str
    actor: str
    run_id: str


class LogTail:
    """Every record appended to aob.runs.events from given offsets on (no consumer group)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.seen: list[Seen] = []
        self.completed: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def follow(self, offsets: dict[TopicPartition, int]) -> None:
        self._consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            self._consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for r in records:
                    self._note(r)

    def _note(self, r: ConsumerRecord) -> None:
        headers = dict(r.headers or ())
        kind = headers.get(HEADER_TYPE, b"").decode(errors="replace")
        try:
            actor = str(json.loads(r.value)["actor"]["id"])
        except (ValueError, TypeError, KeyError):
            actor = ""
        run_id = r.key.decode(errors="replace") if r.key else ""
        self.seen.append(Seen(r.timestamp / 1000, kind, actor, run_id))
        if kind == "run.completed":
            self.completed.add(run_id)

    def mark(self) -> int:
        """A place in what was seen: records produced after now come after it."""
        return len(self.seen)

    def first_after(self, mark: int, cutoff: float, pred: Callable[[Seen], bool]) -> float:
        """The producer time of the first record seen after ``mark``, produced after
        ``cutoff``, that ``pred`` accepts."""
        assert self._task is not None, "the log tail was not started"
        if self._task.done():
            raise RuntimeError("the log tail stopped") from self._task.exception()
        hits = [s.at for s in self.seen[mark:] if s.at > cutoff and pred(s)]
        assert hits, "no such record yet"
        return min(hits)

    def history(self, run_id: str) -> list[str]:
        return [s.type for s in self.seen if s.run_id == run_id]


async def end_offsets(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    tps = await run_partitions(consumer)
    return dict(await consumer.end_offsets(tps))


@dataclass
class LogCount:
    records: int = 0
    ids: Counter[str] = field(default_factory=Counter)
    types: dict[str, str] = field(default_factory=dict)  # event id -> type
    ids_by_run: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    duplicates_by_type: Counter[str] = field(default_factory=Counter)
    successes: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    completions: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


async def run_records(
    bootstrap: str, until: dict[TopicPartition, int], runs: set[str]
) -> AsyncIterator[tuple[str, ConsumerRecord]]:
    """(run id, record) for every record of ``runs`` in aob.runs.events, from the beginning
    up to ``until``, in each partition's order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(until))
        await consumer.seek_to_beginning(*until)
        pending = {tp for tp, end in until.items() if end > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset >= until[tp] or r.key is None:
                        continue
                    run_id = r.key.decode(errors="replace")
                    if run_id in runs:
                        yield run_id, r
            for tp in list(pending):
                if await consumer.position(tp) >= until[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


async def count_log(bootstrap: str, until: dict[TopicPartition, int], runs: set[str]) -> LogCount:
    """aob.runs.events from the beginning up to ``until``: the records of ``runs``."""
    out = LogCount()
    async for run_id, r in run_records(bootstrap, until, runs):
        headers = dict(r.headers or ())
        event_id = headers[HEADER_EVENT_ID].decode()
        kind = headers[HEADER_TYPE].decode()
        out.records += 1
        out.ids[event_id] += 1
        out.types[event_id] = kind
        out.ids_by_run[run_id].add(event_id)
        if out.ids[event_id] > 1:
            out.duplicates_by_type[kind] += 1
        if kind == "run.node_succeeded":
            node_id = json.loads(r.value)["payload"]["node_id"]
            out.successes[(run_id, node_id)].add(event_id)
        elif kind == "run.completed":
            out.completions[run_id].add(event_id)
    return out


async def dead_letters(bootstrap: str, runs: set[str]) -> list[tuple[str, str, str]]:
    """(run id, reason, source) of every record in aob.dlq keyed by one of ``runs``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        tps = [TopicPartition(DLQ, p) for p in await topic_partitions(consumer, DLQ)]
        until = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = {tp for tp in tps if until[tp] > 0}
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=1000)).values():
                for r in records:
                    run_id = r.key.decode(errors="replace") if r.key else ""
                    if run_id in runs:
                        h = dict(r.headers or ())
                        reason = h.get("aob-dlq-reason", b"").decode(errors="replace")
                        found.append((run_id, reason, h.get("aob-dlq-source", b"").decode()))
            for tp in list(pending):
                if await consumer.position(tp) >= until[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found
