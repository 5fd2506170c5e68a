"""Appending to the log: one idempotent aiokafka producer per process.

``append`` waits for the broker's acknowledgement and returns the record's position, which
command answers hand to clients for read-your-writes. Side-effect-free retries are safe
because the producer is idempotent and event ids are stable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from schemas.codec import Headers, encode_event, encode_task
from schemas.envelope import Event
from schemas.position import Position
from schemas.tasks import NodeTask
from schemas.topics import DLQ, task_topic


class EventBus:
    def __init__(self, bootstrap: str, client_id: str = "aob") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,  # small batches under load, barely any added latency when idle
            request_timeout_ms=30_000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> Position:
        md = await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)
        return Position(md.topic, md.partition, md.offset)

    async def append(self, topic: str, event: Event) -> Position:
        key, value, headers = encode_event(event)
        return await self.send(topic, key, value, headers)

    async def append_many(self, topic: str, events: Sequence[Event]) -> list[Position]:
        """Send every event, then wait for all acknowledgements (one round trip, not N)."""
        futures = []
        for ev in events:
            key, value, headers = encode_event(ev)
            futures.append(await self._producer.send(topic, value=value, key=key, headers=headers))
        results = await asyncio.gather(*futures)
        return [Position(md.topic, md.partition, md.offset) for md in results]

    async def send_task(self, task: NodeTask) -> Position:
        key, value, headers = encode_task(task)
        return await self.send(task_topic(task.node_type), key, value, headers)

    async def dead_letter(
        self, key: bytes | None, value: bytes | None, reason: str, source: str
    ) -> Position:
        """Park a record that can never be processed, with why and where it came from."""
        headers = [("aob-dlq-reason", reason.encode()[:4000]), ("aob-dlq-source", source.encode())]
        md = await self._producer.send_and_wait(DLQ, value=value, key=key, headers=headers)
        return Position(md.topic, md.partition, md.offset)
