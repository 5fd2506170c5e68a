"""``KafkaVerdicts`` alone against the stack's Kafka: verdicts appended to a fresh runs topic
with a real producer are found, whether they come after the watcher started or were already
in the log (a redelivered task submitting its patch again: no second verdict comes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from infra.bus import EventBus
from infra.kafka_admin import ensure_topics
from infra.settings import Settings
from schemas.compiler import compile_workflow, definition_version
from schemas.envelope import Actor, system_actor
from schemas.events import (
    PatchApplied,
    PatchAppliedPayload,
    PatchRejected,
    PatchRejectedPayload,
    PatchSubmitted,
    PatchSubmittedPayload,
)
from schemas.position import Position
from schemas.topics import TopicSpec
from schemas.workflow import WorkflowDefinition
from workers.agent.verdicts import KafkaVerdicts, VerdictQuery

pytestmark = pytest.mark.connected

PATCH = [{"op": "add", "path": "/nodes/-", "value": {"id": "n2", "type": "noop"}}]


@pytest.fixture
async def topic(stack: Settings) -> str:
    name = f"test-{uuid.uuid4().hex[:10]}.runs.events"
    await ensure_topics(stack.kafka_bootstrap, [TopicSpec(name, max(stack.topic_partitions, 3))])
    return name


def submitted(run_id: str, patch_id: str) -> PatchSubmitted:
    return PatchSubmitted(
        event_id=patch_id,
        aggregate_id=run_id,
        correlation_id=run_id,
        actor=Actor(kind="agent", id=f"{run_id}/plan", tenant="acme"),
        payload=PatchSubmittedPayload(patch=PATCH, reason="r", node_id="plan", attempt=1),
    )


def rejected(run_id: str, patch_id: str, reason: str = "no") -> PatchRejected:
    return PatchRejected(
        aggregate_id=run_id,
        correlation_id=run_id,
        causation_id=patch_id,
        actor=system_actor("coordinator"),
        payload=PatchRejectedPayload(patch_id=patch_id, reasons=[reason], current_version="v1"),
    )


def applied(run_id: str, patch_id: str) -> PatchApplied:
    model = WorkflowDefinition.model_validate(
        {"nodes": [{"id": "n1", "type": "noop"}, {"id": "n2", "type": "noop"}], "edges": []}
    )
    return PatchApplied(
        aggregate_id=run_id,
        correlation_id=run_id,
        causation_id=patch_id,
        actor=system_actor("coordinator"),
        payload=PatchAppliedPayload(
            patch_id=patch_id,
            from_version="v1",
            to_version=definition_version(model),
            definition=model.canonical(),
            ir=compile_workflow(model),
            definition_ref="cas://sha256:" + "0" * 64,
            ir_ref="cas://sha256:" + "1" * 64,
            added_nodes=["n2"],
        ),
    )


def ids() -> tuple[str, str]:
    return f"run-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())


async def test_a_verdict_appended_while_waiting_is_found_among_other_records(
    stack: Settings, bus: EventBus, topic: str
) -> None:
    run_id, patch_id = ids()
    other_run, _ = ids()
    since = datetime.now(UTC)
    where = await bus.append(topic, submitted(run_id, patch_id))
    watcher = KafkaVerdicts(stack.kafka_bootstrap, topic)
    query = VerdictQuery(run_id, patch_id, where, since, timeout_s=20)
    waiting = asyncio.create_task(watcher.wait(query))
    # Part of the scenario, not a wait for a state: the verdict must come while the watcher
    # is already waiting (its consumer gives no signal of that), and nothing before it.
    await asyncio.sleep(0.5)
    assert not waiting.done()
    # Not ours: another patch of this run, and the same patch id under another run's key.
    await bus.append(topic, rejected(run_id, str(uuid.uuid4()), "another patch"))
    await bus.append(topic, rejected(other_run, patch_id, "another run"))
    await bus.append(topic, applied(run_id, patch_id))
    verdict = await waiting
    assert isinstance(verdict, PatchApplied)
    assert verdict.payload.patch_id == patch_id and verdict.aggregate_id == run_id
    assert verdict.payload.added_nodes == ["n2"]


async def test_a_verdict_already_in_the_log_is_found_for_a_redelivered_submission(
    stack: Settings, bus: EventBus, topic: str
) -> None:
    run_id, patch_id = ids()
    scheduled_at = datetime.now(UTC)
    await bus.append(topic, submitted(run_id, patch_id))
    await bus.append(topic, rejected(run_id, patch_id, "the patch makes a cycle"))
    # The redelivered task appends its submission again (same id) after the verdict; the
    # coordinator drops it, so no second verdict ever comes.
    again = await bus.append(topic, submitted(run_id, patch_id))
    watcher = KafkaVerdicts(stack.kafka_bootstrap, topic)
    verdict = await watcher.wait(VerdictQuery(run_id, patch_id, again, scheduled_at, 20))
    assert isinstance(verdict, PatchRejected)
    assert verdict.payload.reasons == ["the patch makes a cycle"]


async def test_the_run_partition_is_found_from_its_key_when_the_position_is_unknown(
    stack: Settings, bus: EventBus, topic: str
) -> None:
    run_id, patch_id = ids()
    await bus.append(topic, rejected(run_id, patch_id, "found by key"))
    watcher = KafkaVerdicts(stack.kafka_bootstrap, topic)
    verdict = await watcher.wait(VerdictQuery(run_id, patch_id, None, None, 20))
    assert isinstance(verdict, PatchRejected)
    assert verdict.payload.reasons == ["found by key"]


async def test_no_verdict_gives_none_when_the_time_is_up(
    stack: Settings, bus: EventBus, topic: str
) -> None:
    run_id, patch_id = ids()
    where = await bus.append(topic, submitted(run_id, patch_id))
    watcher = KafkaVerdicts(stack.kafka_bootstrap, topic)
    started = time.monotonic()
    since = datetime.now(UTC) - timedelta(seconds=1)
    assert await watcher.wait(VerdictQuery(run_id, patch_id, where, since, 2.0)) is None
    assert 2.0 <= time.monotonic() - started < 10


async def test_a_verdict_older_than_the_schedule_margin_is_not_scanned_for(
    stack: Settings, bus: EventBus, topic: str
) -> None:
    """The scan starts near the task's schedule, not at the start of the partition."""
    run_id, patch_id = ids()
    await bus.append(topic, rejected(run_id, patch_id, "long ago"))
    # Part of the scenario: the old verdict's timestamp must lie beyond the margin (0.5 s).
    await asyncio.sleep(1.5)
    where = await bus.append(topic, submitted(run_id, patch_id))
    watcher = KafkaVerdicts(stack.kafka_bootstrap, topic, clock_margin_s=0.5)
    since = datetime.now(UTC)
    query = VerdictQuery(
        run_id, patch_id, Position(where.topic, where.partition, where.offset), since, 1.5
    )
    assert await watcher.wait(query) is None
