"""Where keys and topics live in Kafka: one answer for every reader and writer of AOB.

``key_partition`` is the partition Kafka's default partitioner gives a key (murmur2, as the
Java client and aiokafka's producer do): every reader that looks for a run's records without
a position in hand (the coordinator's repair, the agent's verdict watcher, the replay
tooling) must agree with the producer that put them there. ``topic_partitions`` asks the
brokers for a topic's partitions.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of ``topic``, fresh from the brokers ([] if it does not exist)."""
    # ``consumer.topics()`` does not refresh the consumer's own view (aiokafka 0.14), and
    # aiokafka has no public call that fetches a topic's partitions when they are unknown:
    # ask the fetched cluster metadata itself.
    cluster = await consumer._client.fetch_all_metadata()
    return sorted(cluster.partitions_for_topic(topic) or ())
