"""Batches of a faust stream's events, as the coordinator takes them (``processors.coordinator``).

faust's own ``Stream.take_events(max_, within)`` wakes every ``within`` seconds even while
nothing comes: at the millisecond the coordinator can afford to add to a step, that is a
thousand wake-ups a second, about 12% of a core on an idle stack (measured with a 1 ms
``within``). ``take_batches`` is the same machinery — a processor fills a buffer while faust
consumes the stream passively, and a batch's events are acknowledged only when the next
batch is asked for, that is after the caller has handled them — with one difference: while
the buffer is empty it sleeps until a record comes, and only then gathers more.

Gathering goes on while records keep coming: a batch is closed once ``turns`` turns of the
event loop brought no new record (what faust has fetched flows in within a few turns; what
it has not is not there yet), when ``max_`` are there, or when it has been gathered for
``longest`` seconds. Two rules were measured before this one. A fixed wait of 1 ms after the
first record closed batches of 5 to 10 records while thousands waited in the partitions
(faust hands records to the stream one at a time), and every batch pays a round trip to the
broker and a changelog write per run. A gap of 1 ms with no new record made large batches,
but an idle step waited 2 to 3 ms for it (the event loop's timers round up to the next
millisecond): 4 ms more on a three-node chain run one at a time than turns of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from mode.utils.aiter import aiter
from mode.utils.futures import notify


async def take_batches(
    stream: faust.StreamT[Any], max_: int, turns: int, longest: float
) -> AsyncIterator[list[faust.types.EventT[Any]]]:
    """Lists of up to ``max_`` events of ``stream``, in order, acknowledged after use: a
    batch closes once ``turns`` turns of the event loop brought no new record, or once
    gathered for ``longest`` seconds."""
    buffer: list[faust.types.EventT[Any]] = []
    has_some = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    s: Any = stream  # faust's Stream: its StreamT protocol lacks the passive-mode methods

    async def add(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # the caller is handling a batch: hold this one back
                try:
                    await consuming
                finally:
                    consuming = None
            event = s.current_event
            if event is None:
                raise RuntimeError("a record reached the batch without its event")
            buffer.append(event)
            has_some.set()
            if len(buffer) >= max_:
                consumed.clear()
                await s.wait(consumed)  # no more than max_ in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.log.exception("could not add a record to the batch: %r", exc)
            await s.crash(exc)
        return value

    loop = asyncio.get_running_loop()
    acks = s.enable_acks
    s.enable_acks = False  # acknowledged here, once a batch is handled
    s.add_processor(add)
    s._enable_passive(aiter(s.channel))
    try:
        while not s.should_stop:
            if not buffer:
                has_some.clear()
                await s.wait_for_stopped(has_some)  # asleep while nothing comes
            closes_at = loop.time() + longest
            while buffer and len(buffer) < max_ and loop.time() < closes_at:
                had = len(buffer)
                for _ in range(turns):
                    await asyncio.sleep(0)
                if len(buffer) == had:  # a gap: nothing more came
                    break
            if not buffer:
                continue
            consuming = loop.create_future()
            batch = list(buffer)
            try:
                yield batch
            finally:
                buffer.clear()
                for event in batch:
                    await s.ack(event)
                notify(consuming)
                consumed.set()
    finally:
        s.enable_acks = acks
        s._processors.remove(add)
