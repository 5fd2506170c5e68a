"""The topics the coordinator needs before faust starts.

faust runs with ``topic_allow_declare=False``: it must not create the run topic (that is the
deployment's, with its retention) nor guess the changelog's shape. So the changelogs
are created here, compacted and with exactly as many partitions as the run topic: faust
writes a run's state to the changelog partition of the event being processed, and on
recovery reads partition ``p`` of the changelog for partition ``p`` of the runs
(co-partitioning).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from infra.kafka_admin import ensure_topics
from processors.config import CoordinatorConfig
from schemas.topics import TopicSpec


class TopicMismatch(RuntimeError):
    """The run topic is missing, or its partitioning does not fit the table's."""


async def partitions_of(bootstrap: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for item in described:
        if item.get("topic") == topic and item.get("error_code", 0) == 0:
            return len(item.get("partitions", []))
    return None


async def prepare_topics(bootstrap: str, config: CoordinatorConfig, partitions: int) -> None:
    """Check the run topic, and create the tables' changelogs if they are missing."""
    have = await partitions_of(bootstrap, config.runs_topic)
    if have is None:
        raise TopicMismatch(
            f"topic {config.runs_topic} does not exist: start the stack (aob up) first"
        )
    if have != partitions:
        raise TopicMismatch(
            f"topic {config.runs_topic} has {have} partitions, the coordinator's table "
            f"{partitions} (AOB_TOPIC_PARTITIONS): they must be equal"
        )
    # Compacted, and in segments small enough that compaction keeps up: a restarted
    # coordinator replays the whole changelog, so its size is the restart's length.
    compacted = {
        "cleanup.policy": "compact",
        "segment.ms": str(10 * 60 * 1000),
        "min.cleanable.dirty.ratio": "0.1",
    }
    await ensure_topics(
        bootstrap, [TopicSpec(name, partitions, compacted) for name in config.changelog_topics]
    )
