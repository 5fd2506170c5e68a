"""Waiting in a run's partition for the coordinator's answer to what an agent asked: the
verdict on a patch (``workers.agent.verdicts``), the grant of a model call
(``workers.agent.turns``).

The coordinator appends its answer to the same run's stream, hence to the same partition of
the runs topic, after the question. The partition is followed with the run reader of
``infra.run_log``: a consumer of its own for each wait, assigned by hand, no group, nothing
committed; it only looks. Records of other runs are skipped by key; ``match`` skips the rest.

Where to start: a redelivered task asks again under the same id, and the coordinator drops
the duplicate, so the answer to the first asking, older than the question at hand, must be
found. So reading starts at the earliest of where the question landed (when the producer
said) and a little before the task was scheduled (clocks differ: the coordinator stamps
``scheduled_at``, producers stamp records); knowing neither, at the partition's beginning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import TypeVar

from aiokafka import ConsumerRecord

from infra.run_log import RunPartition, open_run_partition

# Start this much earlier than the task's schedule, so that no answer about it is missed.
CLOCK_MARGIN_S = 5.0

A = TypeVar("A")
R = TypeVar("R")


async def first_offset(
    run: RunPartition, asked_at: int | None, since: datetime | None, margin_s: float
) -> int:
    """The first offset that may hold the answer (the module doc)."""
    candidates: list[int] = []
    if asked_at is not None:
        candidates.append(asked_at)
    if since is not None:
        found = await run.offset_since(since - timedelta(seconds=margin_s))
        if found is not None:
            candidates.append(found)
    if candidates:
        return min(candidates)
    return await run.beginning()  # nothing but the whole partition is sure to hold it


async def first_match(
    run: RunPartition, start: int, match: Callable[[ConsumerRecord], A | None]
) -> tuple[A, int] | None:
    """The first of the run's records from ``start`` that ``match`` answers for, with its
    offset; the read has no end (records are followed as they are appended)."""
    async with aclosing(run.records(start)) as records:
        async for record in records:
            answer = match(record)
            if answer is not None:
                return answer, record.offset
    return None  # the records of a live partition do not end; a test's may


async def read_run(
    bootstrap: str,
    topic: str,
    run_id: str,
    *,
    partition: int | None,
    read: Callable[[RunPartition], Awaitable[R | None]],
    timeout_s: float,
    client_id: str,
) -> R | None:
    """``read`` of the run's partition, or None if it did not finish within ``timeout_s``.
    ``partition``: where the question landed, when known (else the brokers say where the
    run's key goes). Kafka faults propagate."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            open_run_partition(
                bootstrap, run_id, topic=topic, partition=partition, client_id=client_id
            ) as run,
        ):
            return await read(run)
    except TimeoutError:
        return None
