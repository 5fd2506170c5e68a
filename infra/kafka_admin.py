"""Creating AOB's topics idempotently, with their configs (retention etc.)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import TopicSpec


async def existing_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Create each missing topic; returns the names created. Existing topics are left as
    they are (their partition count is never changed: keys must keep their partition)."""
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    created: list[str] = []
    try:
        have = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in have]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ],
                timeout_ms=15000,
            )
            for name, code, message in _errors(response):
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    raise RuntimeError(f"creating topic {name} failed: {code} {message}")
        # Wait until the broker's metadata lists every topic.
        for _ in range(100):
            if {s.name for s in specs} <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return created


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    out = []
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((name, code, message))
    return out
