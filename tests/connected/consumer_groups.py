"""What Kafka says about a consumer group: which partitions each member holds."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment as Assignment

from infra.settings import Settings


async def partitions_by_member(settings: Settings, group: str, topic: str) -> list[list[int]]:
    """The partitions of ``topic`` each member of the stable ``group`` holds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (found,) = described.to_object()["groups"]
    assert found["state"] == "Stable", found["state"]
    return [
        sorted(dict(Assignment.decode(m["member_assignment"]).assignment).get(topic, []))
        for m in found["members"]
    ]
