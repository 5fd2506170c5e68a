"""Every Kafka topic AOB uses: names, keys, partitions and retention, in one place.

Topics are created idempotently at start-up from this table (``infra.kafka_admin``), so the
local stack and docker compose behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKFLOW_EVENTS = "aob.workflows.events"
RUN_EVENTS = "aob.runs.events"
DLQ = "aob.dlq"
TASK_TOPIC_PREFIX = "aob.tasks."

# Node types that have a worker topic. An unknown type never gets a topic: the coordinator
# skips such a node instead of routing it nowhere.
TASK_TYPES: tuple[str, ...] = (
    "noop",
    "transform",
    "http",
    "agent",
    "hitl",
    "condition",
    "wait_event",
    "subworkflow",
)


def task_topic(node_type: str) -> str:
    """The worker topic for a node type: ``aob.tasks.<type>``."""
    return f"{TASK_TOPIC_PREFIX}{node_type}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    # The log is the source of truth: event topics keep everything forever.
    config: dict[str, str] = field(default_factory=lambda: {"retention.ms": "-1"})


def all_topics(partitions: int) -> list[TopicSpec]:
    """The topics a deployment needs, with ``partitions`` partitions for the keyed ones."""
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    specs = [
        TopicSpec(WORKFLOW_EVENTS, partitions, dict(forever)),
        TopicSpec(RUN_EVENTS, partitions, dict(forever)),
        TopicSpec(DLQ, 1, dict(forever)),
    ]
    specs += [task_topic_spec(t, partitions) for t in TASK_TYPES]
    return specs


def task_topic_spec(node_type: str, partitions: int) -> TopicSpec:
    """The worker topic of a node type, built-in or registered (``node_types``)."""
    # Tasks are work orders, not history: a week is plenty.
    return TopicSpec(task_topic(node_type), partitions, {"retention.ms": str(7 * 24 * 3600 * 1000)})
