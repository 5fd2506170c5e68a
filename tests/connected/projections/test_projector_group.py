"""Projectors of one projection as a consumer group, against the real Kafka and Postgres:
two share the partitions, and when one is killed the other takes its partitions over from
the offsets stored with the rows, with nothing lost or applied twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.bus import EventBus
from infra.settings import Settings
from projections.runner import ProjectorConfig, topics_with_prefix
from tests.connected.consumer_groups import partitions_by_member
from tests.connected.projections.conftest import ProjectorProcess
from tests.connected.projections.test_projector_connected import _run_events
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RUNS = 24  # over 4 partitions: each projector gets runs to write


@pytest.fixture
async def second(projector: ProjectorProcess) -> AsyncIterator[ProjectorProcess]:
    """A second projector of the same projection, schema and log: the same group."""
    p = ProjectorProcess(schema=projector.schema, name=projector.name, prefix=projector.prefix)
    p.start()
    yield p
    p.stop()


async def _all_projected(pg: asyncpg.Connection, run_ids: list[str]) -> None:
    rows = await pg.fetch(
        "SELECT status, event_count FROM runs WHERE run_id = ANY($1::text[])", run_ids
    )
    assert len(rows) == len(run_ids), f"{len(rows)} of {len(run_ids)} runs"
    assert {(r["status"], r["event_count"]) for r in rows} == {("COMPLETED", 6)}, rows


async def test_two_projectors_share_the_partitions_and_one_takes_over_from_a_dead_one(
    pg: asyncpg.Connection,
    bus: EventBus,
    projector: ProjectorProcess,
    second: ProjectorProcess,
    stack: Settings,
) -> None:
    group = ProjectorConfig(
        bootstrap="",
        dsn="",
        projection=projector.name,
        schema=projector.schema,
        topics=topics_with_prefix(projector.prefix),
    ).group_id

    async def shared() -> list[list[int]]:
        held = await partitions_by_member(stack, group, projector.runs_topic)
        assert len(held) == 2 and all(held), held  # two members, each with partitions
        return held

    held = await eventually(shared, timeout=60)
    assert sorted(p for ps in held for p in ps) == list(range(stack.topic_partitions))

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    first_runs = [f"run-{uuid.uuid4()}" for _ in range(RUNS)]
    for run_id in first_runs:
        await bus.append_many(projector.runs_topic, _run_events(run_id, tenant))
    await eventually(lambda: _all_projected(pg, first_runs), timeout=60)
    partitions = await pg.fetch(
        "SELECT DISTINCT kafka_partition FROM run_events WHERE run_id = ANY($1::text[])",
        first_runs,
    )
    # The runs are spread over the partitions, so both projectors wrote some.
    assert all(set(ps) & {r["kafka_partition"] for r in partitions} for ps in held)

    second.kill()  # no clean leave: the group waits out its session, then moves its partitions
    later_runs = [f"run-{uuid.uuid4()}" for _ in range(RUNS)]
    for run_id in later_runs:
        await bus.append_many(projector.runs_topic, _run_events(run_id, tenant))
    await eventually(lambda: _all_projected(pg, later_runs), timeout=90)
    (alone,) = await partitions_by_member(stack, group, projector.runs_topic)
    assert alone == list(range(stack.topic_partitions))  # the survivor holds them all

    every = first_runs + later_runs
    seqs = await pg.fetch(
        """SELECT run_id, array_agg(seq ORDER BY seq) AS seqs FROM run_events
           WHERE run_id = ANY($1::text[]) GROUP BY run_id""",
        every,
    )
    assert {tuple(r["seqs"]) for r in seqs} == {(1, 2, 3, 4, 5, 6)}
    successes = await pg.fetch(
        "SELECT DISTINCT successes FROM node_executions WHERE run_id = ANY($1::text[])", every
    )
    assert [r["successes"] for r in successes] == [1]
