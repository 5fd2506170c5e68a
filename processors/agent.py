"""The coordinator in faust: its agent, its timers and its rebalance hook.

``processors.coordinator`` holds the loop (``Coordinator.handle_batch``); here it is wired to
faust: the agent hands it the run topic's batches (``processors.batching``) with a scope that
sends each partition's table writes to that partition's changelog; a timer fires the ticker
(rebuilding its index, and waking the runs whose states do not load, after each rebalance);
another logs the loop's figures.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event  # see table_scope

from processors.app import CoordinatorApp
from processors.batching import take_batches
from processors.coordinator import Coordinator, PartitionScope

log = logging.getLogger("aob.coordinator")


def table_scope(events: Sequence[faust.types.EventT[Any]]) -> PartitionScope:
    """Table writes for a partition of a batch, as if made while handling its last record.

    A faust table sends each write to the changelog partition of the record being handled,
    which it reads from the stream's current event; a batch is handled
    outside that iteration, so the event of the partition is made current for its writes.
    """
    last = {e.message.partition: e for e in events}

    @contextmanager
    def scope(partition: int) -> Iterator[object]:
        token = _current_event.set(weakref.ref(last[partition]))
        try:
            yield None
        finally:
            _current_event.reset(token)

    return scope


def register(parts: CoordinatorApp, coordinator: Coordinator) -> None:
    """Attach the agent, the timer and the rebalance hook to the faust app."""

    @parts.app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        coordinator.forget_checks()

    config = coordinator.config

    @parts.app.agent(parts.runs_topic, concurrency=1, name="coordinate")
    async def coordinate(stream: faust.StreamT[bytes]) -> None:
        # A batch's records are acknowledged to faust only when the next batch is asked
        # for, that is after handle_batch stored what they decided.
        async for events in take_batches(
            stream, config.batch_max, config.batch_gap_turns, config.batch_longest_s
        ):
            await coordinator.handle_batch(
                [(e.key, e.value, (e.message.partition, e.message.offset)) for e in events],
                table_scope(events),
            )

    @parts.app.timer(coordinator.config.timer_interval_s)
    async def fire_timers() -> None:
        ticker = coordinator.ticker
        if ticker.busy():
            return
        # After a rebalance the table was recovered anew: so is the index of timers.
        generation = getattr(parts.app, "rebalancing_count", 0)
        if ticker.generation != generation:
            ticker.rebuild(coordinator.live_states(), generation)
            await ticker.wake(coordinator.unreadable)
        await ticker.fire()
        await coordinator.memory.release_if_due()

    if coordinator.config.stats_interval_s > 0:

        @parts.app.timer(coordinator.config.stats_interval_s)
        async def report_stats() -> None:
            figures = coordinator.stats.report()
            figures["timers_fired"] = coordinator.ticker.fired_total
            figures["gap_records_filled"] = coordinator.gaps_filled
            figures["runs_failed_by_the_loop"] = coordinator.runs_failed
            if figures["events"]:
                log.info("coordinator loop: %s", figures)
