"""The coordinator's faust App: faust's, with four changes to how it moves records.

- Its consumer hands a record to the agent in place when nothing makes that wait
  (``processors.quick_delivery``).
- When every partition is held back because the stream's buffer is full, its consumer
  fetches again as soon as one drains, not a second later.
- Its consumer's fetches wait at most ``fetch_max_wait_ms`` for data, not the 1,500 ms
  faust sets.
- Its producer, once started, is handed to whoever sends at once, not after two turns of
  the event loop.

Why the second matters: faust's flow control takes a partition out of the fetches once the
agent's stream holds more than four fifths of ``stream_buffer_maxsize`` records, and puts it
back once the stream has worked down to two fifths. With no partition left, faust's consumer
sleeps for a second before it looks again. In a fanout10 burst the coordinator's backlog
crossed that mark two or three times, worked its buffer off in a few hundred ms, and then
waited out the rest of the second with nothing to do: a burst of 6.4 s had two pauses of
0.4 and 0.7 s in which the whole stack was idle.

Why the wait matters: aiokafka keeps one fetch in flight per broker. A partition whose
fetched records are not all consumed yet is left out of the next fetch, which then asks
only for the others. If those others get no new record, the broker holds that fetch for the
whole wait. Meanwhile the partition left out is consumed to its end, and cannot be fetched
again until the held fetch comes back. With one broker this happens at the end of a burst,
when one partition still has work and the others have none: with faust's 1,500 ms, the
last runs of a fanout10 burst waited 0.5 and 0.9 s for their last records. A short wait
bounds such a pause. When the topic is idle, the price is an empty fetch per wait.

Why the last matters: faust sends each changelog record of a table (a run's stored state)
through ``App.maybe_start_producer``, which guards against starting the producer twice by
yielding to the event loop before and after it looks. aiokafka's sender ran in each of
those turns and sent what had come so far: a fanout10 burst's changelog went to the broker
two records per produce request, 1,963 requests for 1,000 runs, each a write to the socket
and a request for the broker. Once the producer runs there is nothing to guard: it is
returned at once, and a batch's changelog records go out together.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from processors.config import CoordinatorConfig
from processors.quick_delivery import QuickWaitFirst

DEFAULT_FETCH_MAX_WAIT_MS = CoordinatorConfig.model_fields["fetch_max_wait_ms"].default


class ShortFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread; its aiokafka consumer's fetches wait for data as long as
    the App's ``fetch_max_wait_ms``."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the consumer's start, which passes it on to its fetcher.
        consumer._fetch_max_wait_ms = cast("CoordinatorFaustApp", self.app).fetch_max_wait_ms
        return consumer


class CoordinatorConsumer(QuickWaitFirst, faust_aiokafka.Consumer):
    """faust's aiokafka consumer: quick delivery, no dead second after a full buffer, short
    fetches (the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._buffer_drained = asyncio.Event()
        super().__init__(*args, **kwargs)

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._buffer_drained.set()

    async def _wait_next_records(self, timeout: float) -> Any:
        self._buffer_drained.clear()
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            # faust would sleep a second here: wait for a buffer to drain instead, as long
            # at most (a partition can also come back by a rebalance, which faust's own
            # sleep does not see either).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer_drained.wait(), 1.0)
        return await super()._wait_next_records(timeout)

    def _new_consumer_thread(self) -> ShortFetchConsumerThread:
        return ShortFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class CoordinatorTransport(faust_aiokafka.Transport):
    Consumer = CoordinatorConsumer


class CoordinatorFaustApp(faust.App):
    """faust's App, with ``CoordinatorConsumer`` for its consumer, and its producer handed
    over at once once started (the module doc)."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return CoordinatorTransport(self.conf.broker_consumer, self)

    async def maybe_start_producer(self) -> Any:
        producer = self.producer
        if not self.in_transaction and producer.started:
            return producer
        return await super().maybe_start_producer()
