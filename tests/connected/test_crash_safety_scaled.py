"""Crash safety with two instances of every service that does the work (``aob up --scale
coordinator=2,workers=2,projections=2``): SIGKILL one instance of one kind at a time while
runs are in flight, restart it, go on to the next, until each instance has died once.

Both instances of a kind share the work (checked: each coordinator, each projector holds
partitions of the run topic in its consumer group), and when one dies the other takes its
partitions over. At the end every run is COMPLETED, each of its nodes has exactly one
success in the log and in the read model, the read model holds every event id of the log
once, and the read models that two projectors built through the kills are, row for row, what
one projector alone builds from the same log (``aob replay projections``, then the dumps
compared). ``AOB_CRASH_SEED`` replays a seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from infra.instances import instance_name
from infra.settings import Settings
from infra.stack import Stack
from infra.stack.process import ensure_running
from processors.config import DEFAULT_APP_ID
from projections.runner import ProjectorConfig
from read_model.offsets import DEFAULT_PROJECTION
from replay.dump import differences
from schemas.topics import RUN_EVENTS
from tests.connected.consumer_groups import partitions_by_member
from tests.connected.log_reading import LogTail, end_offsets
from tests.connected.test_crash_safety import (
    SEED,
    WORKFLOW,
    Submitter,
    all_completed,
    dead,
    exactly_once,
    kafka,  # noqa: F401 - the fixture
    live_pid,
    log_size,
    pg,  # noqa: F401 - the fixture
    tail,  # noqa: F401 - the fixture
)
from tests.connected.test_replay_projections import finished_replay, replay, settled
from tests.helpers import eventually

pytestmark = [pytest.mark.connected, pytest.mark.timeout(900)]

RUNS = 300
SCALE = {"coordinator": 2, "workers": 2, "projections": 2}
# One instance at a time, each instance once, kinds interleaved.
KILLS = [
    ("coordinator", 1),
    ("workers", 2),
    ("projections", 1),
    ("coordinator", 2),
    ("workers", 1),
    ("projections", 2),
]
GATE_RECORDS = (100, 300)  # records of the log between a restart and the next kill
TIMEOUT_S = 300.0


@pytest.fixture
async def scaled(services: Settings) -> AsyncIterator[Stack]:
    """Two of each; one of each again afterwards, whatever happens."""
    stack = Stack(services)
    await stack.up(scale=SCALE)
    try:
        yield stack
    finally:
        await stack.up(scale=dict.fromkeys(SCALE, 1))


async def both_hold_partitions(settings: Settings, group: str) -> None:
    held = await partitions_by_member(settings, group, RUN_EVENTS)
    assert len(held) == 2 and all(held), f"{group}: partitions by member {held}"


async def test_two_of_each_lose_nothing_and_double_nothing_when_one_instance_dies_at_a_time(
    services: Settings,
    scaled: Stack,
    bulk_api_key: str,
    pg: asyncpg.Pool,  # noqa: F811 - the fixture
    kafka: AIOKafkaConsumer,  # noqa: F811 - the fixture
    tail: LogTail,  # noqa: F811 - the fixture
    figures: list[dict[str, Any]],
) -> None:
    rng = random.Random(f"{SEED}-scaled")
    print(f"\n[crash-safety scaled] seed {SEED} (AOB_CRASH_SEED={SEED} replays it)")
    specs = {spec.name: spec for spec in scaled.services()}
    coordinators = [instance_name("coordinator", i) for i in (1, 2)]
    log_from = {name: log_size(services, name) for name in coordinators}
    projector_group = ProjectorConfig(bootstrap="", dsn="").group_id

    # Both instances of a kind work: Kafka gave each a share of the run topic.
    await eventually(lambda: both_hold_partitions(services, DEFAULT_APP_ID), timeout=60)
    await eventually(lambda: both_hold_partitions(services, projector_group), timeout=60)

    started = time.monotonic()
    tail.follow(await end_offsets(kafka))
    headers = {"Authorization": f"Bearer {bulk_api_key}"}
    async with httpx.AsyncClient(
        base_url=services.command_api_url, headers=headers, timeout=30
    ) as rest:
        published = await rest.post("/v1/workflows", json=WORKFLOW)
        assert published.status_code == 201, published.text
        submitter = Submitter(rest, published.json()["workflow_id"], first_n=1)
        feeding = asyncio.create_task(submitter.submit(RUNS))
        in_flight_at_kill: list[int] = []
        try:
            base = sum((await end_offsets(kafka)).values())
            for kind, instance in KILLS:
                k = rng.randint(*GATE_RECORDS)

                async def advanced(base: int = base, k: int = k) -> None:
                    now = sum((await end_offsets(kafka)).values())
                    assert now >= base + k, f"log advanced {now - base} of {k} records"

                await eventually(advanced, timeout=TIMEOUT_S, interval=0.05)
                in_flight = len(set(submitter.runs) - tail.completed)
                assert in_flight > 0, "no run in flight any more: the kill would test nothing"
                in_flight_at_kill.append(in_flight)

                spec = specs[instance_name(kind, instance)]
                pid = live_pid(services, spec)
                os.kill(pid, signal.SIGKILL)
                await eventually(lambda pid=pid: dead(pid), timeout=10, interval=0.01)
                await ensure_running(services, spec)
                print(
                    f"[crash-safety scaled] killed {spec.name} after {k} records, "
                    f"{in_flight} runs in flight; restarted"
                )
                base = sum((await end_offsets(kafka)).values())
            await feeding
        finally:
            if not feeding.done():
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)

    runs = submitter.runs
    assert len(runs) == RUNS

    await all_completed(services, pg, tail, runs, TIMEOUT_S)
    wall_s = round(time.monotonic() - started, 1)

    # Log and read model agree; each node of each run succeeded once; nothing dead-lettered,
    # no coordinator lost a run's state.
    seen = await exactly_once(services, pg, kafka, runs, log_from)
    log = seen.log

    # What two projectors built through the kills is what one builds alone from the log.
    ends, live = await settled(services)
    result = await finished_replay(await replay())
    ends_after, rebuilt = await settled(services)
    assert ends_after == ends, "the log moved during the comparison"
    diff = differences(live, rebuilt)
    assert not diff, "the read models of two projectors differ from one's:\n" + "\n".join(diff)

    row = {
        "test": "crash_safety_scaled",
        "scale": SCALE,
        "seed": SEED,
        "runs": RUNS,
        "kills": [instance_name(kind, i) for kind, i in KILLS],
        "in_flight_at_kill_min": min(in_flight_at_kill),
        "log_records": log.records,
        "duplicates_dropped": log.records - len(log.ids),
        "records_faust_skipped_read_from_log": seen.undelivered,
        "rebuilt_events": result["events"],
        "projection": DEFAULT_PROJECTION,
        "wall_s": wall_s,
    }
    print(json.dumps(row))
    figures.append(row)
