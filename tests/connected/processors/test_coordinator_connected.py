"""The coordinator as a process against the real Kafka: this test plays client and worker.

It appends RunSubmitted to the (fresh) run topic, answers the tasks the coordinator routes
with NodeStarted/NodeSucceeded, and reads the run's history back from the log.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from run_model.testing import build_ir, run_submitted
from schemas.codec import encode_event
from schemas.events import NodeScheduled, RunCompleted
from tests.connected.processors.conftest import Isolated, stop, wait_for_log
from tests.connected.processors.harness import (
    FakeWorker,
    RunLog,
    assert_completed_once_each,
    committed_past,
    fan_out_fan_in,
    of_type,
    settled,
    submit,
)
from tests.helpers import eventually

pytestmark = pytest.mark.connected


async def test_fan_out_fan_in_run_completes_with_each_node_scheduled_once(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    run_id = f"run-{uuid.uuid4()}"
    ir = fan_out_fan_in()
    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}) as worker:
        await submit(isolated, producer, run_id, ir)

        def done() -> None:
            events = log.events(run_id)
            assert events and isinstance(events[-1], RunCompleted), [e.type for e in events]

        await eventually(done, timeout=90)
        await eventually(lambda: settled(isolated, log, run_id), timeout=60)
        assert_completed_once_each(log, run_id, ir)
        completed = log.events(run_id)[-1]
        assert completed.payload.output == {"join": {"node": "join"}}
        join_task = next(t for t in worker.tasks_seen if t.node_id == "join")
        assert set(join_task.nodes) == {"start", "left", "right"}
        assert join_task.input == {"n": 1}
        types = [e.type for e in log.events(run_id)]
        assert types[:3] == ["run.submitted", "run.started", "run.node_scheduled"]


async def test_poison_record_goes_to_the_dead_letter_topic_and_the_loop_goes_on(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    key = f"poison-{uuid.uuid4()}".encode()
    await producer.send_and_wait(isolated.config.runs_topic, b"{not json", key=key)
    dlq = AIOKafkaConsumer(
        isolated.config.dlq_topic,
        bootstrap_servers=isolated.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-dlq-{uuid.uuid4().hex[:8]}",
    )
    await dlq.start()
    try:
        found: list[Any] = []

        async def parked() -> None:
            batches = await dlq.getmany(timeout_ms=500)
            found.extend(r for rs in batches.values() for r in rs if r.key == key)
            assert found

        await eventually(parked, timeout=60)
        headers = dict(found[0].headers)
        assert b"not JSON" in headers["aob-dlq-reason"]
        assert headers["aob-dlq-source"].startswith(isolated.config.runs_topic.encode())
        assert found[0].value == b"{not json"
    finally:
        await dlq.stop()

    run_id = f"run-{uuid.uuid4()}"
    ir = build_ir({"only": "noop"}, [])
    async with RunLog(isolated) as log, FakeWorker(isolated, producer, {run_id}):
        await submit(isolated, producer, run_id, ir)

        def done() -> None:
            assert any(isinstance(e, RunCompleted) for e in log.events(run_id))

        await eventually(done, timeout=60)


def step_latencies(log: RunLog, run_ids: set[str]) -> list[float]:
    """ms from a worker's NodeSucceeded record to the first record the coordinator decided
    because of it (both timestamps are the producers' clocks on this machine)."""
    out = []
    for run_id in run_ids:
        records = log.by_run[run_id]
        first_effect: dict[str, int] = {}
        for ev, ts in records:
            if ev.causation_id and ev.type != "run.node_started" and ev.actor.id == "coordinator":
                first_effect.setdefault(ev.causation_id, ts)
        for ev, ts in records:
            if ev.type == "run.node_succeeded" and ev.event_id in first_effect:
                out.append(first_effect[ev.event_id] - ts)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def test_figures_latency_and_throughput(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    """Not a speed assertion: prints rough figures (DESIGN.md, Measuring)."""
    ir = fan_out_fan_in()
    quiet = {f"run-q-{uuid.uuid4()}" for _ in range(10)}
    burst = {f"run-b-{uuid.uuid4()}" for _ in range(300)}
    async with RunLog(isolated) as log, FakeWorker(isolated, producer, quiet | burst):
        for run_id in quiet:  # one run at a time: latency of an idle coordinator
            await submit(isolated, producer, run_id, ir)

            def done(run_id: str = run_id) -> None:
                assert any(isinstance(e, RunCompleted) for e in log.events(run_id))

            await eventually(done, timeout=60, interval=0.02)

        began = time.perf_counter()
        acks = []
        for run_id in burst:
            key, value, headers = encode_event(run_submitted(run_id, ir, {"n": 1}))
            acks.append(
                await producer.send(isolated.config.runs_topic, value, key=key, headers=headers)
            )
        await asyncio.gather(*acks)

        def all_done() -> None:
            missing = [
                r for r in burst if not any(isinstance(e, RunCompleted) for e in log.events(r))
            ]
            assert not missing, f"{len(missing)} runs not completed"

        await eventually(all_done, timeout=300, interval=0.1)
        elapsed = time.perf_counter() - began
        for run_id in list(burst)[:20]:
            assert_completed_once_each(log, run_id, ir)

    burst_events = sum(len(log.by_run[r]) for r in burst)
    quiet_lat = step_latencies(log, quiet)
    burst_lat = step_latencies(log, burst)
    figures = {
        "quiet_step_latency_ms": {
            "p50": statistics.median(quiet_lat),
            "p99": percentile(quiet_lat, 0.99),
            "n": len(quiet_lat),
        },
        "burst_runs": len(burst),
        "burst_seconds": round(elapsed, 2),
        "burst_events_through_agent": burst_events,
        "burst_events_per_s": round(burst_events / elapsed, 1),
        "burst_node_executions_per_s": round(len(burst) * len(ir.nodes) / elapsed, 1),
        "burst_step_latency_ms": {
            "p50": statistics.median(burst_lat),
            "p99": percentile(burst_lat, 0.99),
        },
    }
    print("COORDINATOR FIGURES", json.dumps(figures))
    stats = [line for line in isolated.log_text().splitlines() if "coordinator loop:" in line]
    print("\n".join(stats[-8:]))


async def test_killed_coordinator_resumes_from_its_changelog(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    """kill -9 with a run half done; the restarted coordinator recovers the run's state from
    the table's changelog and finishes it, scheduling no node twice."""
    run_id = f"run-{uuid.uuid4()}"
    ir = build_ir({"a": "noop", "b": "transform", "c": "noop"}, [("a", "b"), ("b", "c")])
    async with RunLog(isolated) as log:
        async with FakeWorker(isolated, producer, {run_id}):
            await submit(isolated, producer, run_id, ir)

            def b_scheduled() -> None:
                assert any(
                    isinstance(e, NodeScheduled) and e.payload.node_id == "b"
                    for e in log.events(run_id)
                )

            await eventually(b_scheduled, timeout=60)
            # Once the coordinator has committed past b's scheduling (faust commits every
            # 2.8 s), the restarted one resumes after RunSubmitted and must take the run's
            # state from the changelog.
            scheduled = of_type(log.events(run_id), NodeScheduled, "b")[0]
            where = log.positions[scheduled.event_id]
            await eventually(lambda: committed_past(isolated, *where), timeout=60)
        assert isolated.process is not None
        isolated.process.kill()
        isolated.process.wait()
        isolated.start()
        async with FakeWorker(isolated, producer, {run_id}):

            def done() -> None:
                assert any(isinstance(e, RunCompleted) for e in log.events(run_id))

            await eventually(done, timeout=120)
        await eventually(lambda: settled(isolated, log, run_id), timeout=60)
        assert_completed_once_each(log, run_id, ir)
    text = isolated.log_text()
    assert "Error in recovery" not in text
    assert "no state for run" not in text


async def test_stops_cleanly_on_sigterm(isolated: Isolated) -> None:
    # SIGTERM while faust is still joining the group can hang it (see the report): wait
    # until the current process is ready.
    wait_for_log(isolated, "[^Worker]: Ready", times=isolated.starts)
    returncode = stop(isolated.process)
    assert returncode == 0, isolated.log_text()[-3000:]
