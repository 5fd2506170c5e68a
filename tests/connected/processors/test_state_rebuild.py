"""The coordinator's table is a snapshot of a fold, and the log is the truth (DESIGN.md).

Runs are half done; the coordinator stops; both of its changelog topics are deleted, so the
restarted coordinator recovers empty tables while its consumer group resumes after the events
it had already handled. The next event of each run finds no state: the coordinator must
rebuild the states from the run topic and carry every run to the end, deciding nothing twice.
"""

from __future__ import annotations

import re
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from run_model.testing import build_ir, started, succeeded
from schemas.envelope import Event
from schemas.events import NodeScheduled, NodeSucceeded, RunCompleted
from schemas.tasks import NodeTask
from tests.connected.processors.conftest import Isolated, stop, wait_for_log
from tests.connected.processors.harness import (
    FakeWorker,
    RunLog,
    append,
    committed_past,
    of_type,
    submit,
)
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RUNS = 8


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.delete_topics(names)

        async def gone() -> None:
            assert not set(names) & set(await admin.list_topics())

        await eventually(gone, timeout=60)
    finally:
        await admin.close()


async def test_states_lost_with_the_changelog_are_rebuilt_from_the_log(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_ids = {f"run-{uuid.uuid4()}" for _ in range(RUNS)}
    ir = build_ir({"a": "noop", "b": "noop", "c": "transform"}, [("a", "b"), ("b", "c")])
    held: dict[str, NodeTask] = {}

    def answer_a_hold_b(task: NodeTask) -> list[Event]:
        if task.node_id == "b":
            held[task.run_id] = task
            return [started(task)]
        return [started(task), succeeded(task, {"node": task.node_id})]

    async with RunLog(isolated) as log:
        async with FakeWorker(isolated, producer, run_ids, answer_a_hold_b):
            for run_id in run_ids:
                await submit(isolated, producer, run_id, ir)

            def all_b_started() -> None:
                assert set(held) == run_ids
                for run_id in run_ids:
                    assert len(log.events(run_id)) >= 6  # ... NodeStarted(b) is in the log

            await eventually(all_b_started, timeout=60)
            # The coordinator has handled (and committed) everything of these runs so far.
            for run_id in run_ids:
                last = log.events(run_id)[-1]
                await eventually(
                    lambda last=last: committed_past(isolated, *log.positions[last.event_id]),
                    timeout=60,
                )

        wait_for_log(isolated, "[^Worker]: Ready", times=isolated.starts)
        assert stop(isolated.process) == 0, isolated.log_text()[-3000:]
        await delete_topics(isolated.settings.kafka_bootstrap, isolated.config.changelog_topics)
        isolated.start()

        async with FakeWorker(isolated, producer, run_ids):  # answers c when it comes
            for task in held.values():  # b answers, into a coordinator that lost its table
                await append(isolated, producer, succeeded(task, {"node": "b"}))

            def all_completed() -> None:
                done = [r for r in run_ids if of_type(log.events(r), RunCompleted)]
                assert len(done) == RUNS

            await eventually(all_completed, timeout=120)

    text = isolated.log_text()
    assert "rebuilding the states of its runs from the log" in text
    # Every half-done run was rebuilt, partition by partition, in one pass each.
    rebuilt = [int(n) for n in re.findall(r"rebuilt (\d+) unfinished and 0 finished runs", text)]
    assert sum(rebuilt) == RUNS, text[-3000:]
    for run_id in run_ids:
        events = log.events(run_id)
        # Each node scheduled once: the rebuild re-decided what was already in the log under
        # the same ids, and sent nothing of it again.
        scheduled = {e.event_id: e.payload.node_id for e in of_type(events, NodeScheduled)}
        assert sorted(scheduled.values()) == ["a", "b", "c"]
        assert len(of_type(events, NodeScheduled)) == 3
        (completed,) = of_type(events, RunCompleted)
        assert completed.payload.output == {"c": {"node": "c"}}
        assert {e.payload.node_id for e in of_type(events, NodeSucceeded)} == {"a", "b", "c"}
