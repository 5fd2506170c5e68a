"""One round trip for the callers that wait on the same thing at the same time.

A burst of submissions asks PostgreSQL the same few questions many times at once: the
latest version of one workflow, room under one tenant's limits, a row for each new run.
Asked one by one, each costs a round trip, a pool connection and a statement. Here, callers
with the same key that come while a round trip of that key is under way wait for the next
one, which takes all of them at once (at most ``most_at_once``), in the order they came.

A caller is only ever answered by a round trip that started after it came, so it reads
nothing older than a round trip of its own would have: a version published before a
submission was sent is the one the submission finds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - what one caller brings
O = TypeVar("O")  # noqa: E741 - what one caller gets

# The most callers one round trip answers: a burst's queue is taken in such batches, so that
# no statement reads or writes an unbounded number of rows.
MOST_AT_ONCE = 256


class Coalesced(Generic[K, I, O]):
    """``await coalesced(key, item)``: ``run(key, items)`` for the items of every caller
    that came with ``key`` meanwhile, which returns one answer per item, in their order.
    If ``run`` raises, every caller of that round trip gets the error."""

    def __init__(
        self,
        run: Callable[[K, list[I]], Awaitable[Sequence[O]]],
        *,
        most_at_once: int = MOST_AT_ONCE,
    ) -> None:
        self._run = run
        self._most_at_once = most_at_once
        self._queues: dict[K, list[tuple[I, asyncio.Future[O]]]] = {}
        self._trips: set[asyncio.Task[None]] = set()

    async def __call__(self, key: K, item: I) -> O:
        answer: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is not None:  # a round trip of this key is under way: the next one takes it
            queue.append((item, answer))
        else:
            self._queues[key] = [(item, answer)]
            trips = asyncio.create_task(self._trips_of(key))
            self._trips.add(trips)
            trips.add_done_callback(self._trips.discard)
        return await answer

    async def _trips_of(self, key: K) -> None:
        """Round trips for what waits with ``key``, batch after batch, until nothing does."""
        queue = self._queues[key]
        try:
            while True:
                queue[:] = [(i, a) for i, a in queue if not a.done()]  # gone callers
                if not queue:
                    break
                batch = queue[: self._most_at_once]
                del queue[: len(batch)]
                try:
                    answers = await self._run(key, [item for item, _ in batch])
                except BaseException as e:  # every caller of the batch gets the error
                    for _, answer in batch:
                        if answer.done():
                            continue
                        if isinstance(e, Exception):
                            answer.set_exception(e)
                        else:
                            answer.cancel()
                    if not isinstance(e, Exception):
                        raise
                    continue
                if len(answers) != len(batch):
                    error = RuntimeError(f"{len(answers)} answers for {len(batch)} callers")
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(error)
                    continue
                for (_, answer), result in zip(batch, answers, strict=True):
                    if not answer.done():
                        answer.set_result(result)
        finally:
            del self._queues[key]
            for _, answer in queue:  # only if this task itself was cancelled
                answer.cancel()
