"""The projector against the real Kafka and Postgres: rows, dedupe, NOTIFY, crash restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import pytest

from infra.bus import EventBus
from infra.settings import Settings
from schemas.compiler import compile_workflow
from schemas.envelope import Event, system_actor
from schemas.events import (
    NodeScheduled,
    NodeScheduledPayload,
    NodeStarted,
    NodeStartedPayload,
    NodeSucceeded,
    NodeSucceededPayload,
    RunCompleted,
    RunCompletedPayload,
    RunStarted,
    RunStartedPayload,
    RunSubmitted,
    RunSubmittedPayload,
    RunWarning,
    RunWarningPayload,
    WorkflowPublished,
    WorkflowPublishedPayload,
)
from schemas.workflow import WorkflowDefinition
from tests.connected.projections.conftest import ROOT
from tests.helpers import eventually

pytestmark = pytest.mark.connected

REF = "cas://sha256:" + "b" * 64
DEFINITION = WorkflowDefinition.model_validate(
    {"nodes": [{"id": "only", "type": "noop"}], "edges": []}
)


def _run_events(run_id: str, tenant: str) -> list[Event]:
    actor = system_actor("test", tenant=tenant)
    ir = compile_workflow(DEFINITION)

    def ev(cls: type[Event], payload: Any) -> Event:
        return cls(aggregate_id=run_id, correlation_id=run_id, actor=actor, payload=payload)

    succeeded = ev(
        NodeSucceeded,
        NodeSucceededPayload(
            node_id="only", attempt=1, output={}, output_inline=True, output_ref=REF, output_size=2
        ),
    )
    return [
        ev(
            RunSubmitted,
            RunSubmittedPayload(
                workflow_id=f"wf-{run_id}",
                workflow_name="demo",
                version=ir.version,
                input={"n": 1},
                definition=DEFINITION.canonical(),
                ir=ir,
                definition_ref=REF,
                ir_ref=REF,
            ),
        ),
        ev(RunStarted, RunStartedPayload(version=ir.version)),
        ev(
            NodeScheduled,
            NodeScheduledPayload(
                node_id="only", node_type="noop", attempt=1, task_topic="aob.tasks.noop"
            ),
        ),
        ev(NodeStarted, NodeStartedPayload(node_id="only", attempt=1, worker="test")),
        succeeded,
        succeeded,  # at-least-once delivery: the same event twice
        ev(RunCompleted, RunCompletedPayload(output={"only": {}})),
    ]


async def _listen(conn: asyncpg.Connection, channel: str) -> list[str]:
    received: list[str] = []
    await conn.add_listener(channel, lambda *args: received.append(args[3]))
    return received


async def test_projects_a_run_and_a_workflow(
    pg: asyncpg.Connection, bus: EventBus, projector: Any, stack: Any
) -> None:
    run_id, wf_id, tenant = f"run-{uuid.uuid4()}", f"wf-{uuid.uuid4()}", f"t-{uuid.uuid4().hex[:8]}"
    listener = await asyncpg.connect(stack.postgres_dsn)
    notified = await _listen(listener, "aob_run_changed")
    try:
        await bus.append(
            projector.workflows_topic,
            WorkflowPublished(
                aggregate_id=wf_id,
                actor=system_actor("test", tenant=tenant),
                payload=WorkflowPublishedPayload(
                    workflow_id=wf_id,
                    name="demo",
                    version="v1",
                    definition=DEFINITION.canonical(),
                    definition_ref=REF,
                    ir_ref=REF,
                ),
            ),
        )
        events = _run_events(run_id, tenant)
        await bus.append_many(projector.runs_topic, events)

        async def run_completed() -> asyncpg.Record:
            row = await pg.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
            assert row is not None and row["status"] == "COMPLETED", row
            return row

        run = await eventually(run_completed, timeout=60)
        assert run["tenant"] == tenant and run["event_count"] == 6
        node = await pg.fetchrow("SELECT * FROM node_executions WHERE run_id = $1", run_id)
        assert (node["status"], node["successes"], node["attempts"]) == ("SUCCEEDED", 1, 1)
        assert node["output_ref"] == REF
        seqs = await pg.fetch("SELECT seq FROM run_events WHERE run_id = $1 ORDER BY seq", run_id)
        assert [r["seq"] for r in seqs] == [1, 2, 3, 4, 5, 6]

        wf = await eventually(
            lambda: _fetch_one(pg, "SELECT * FROM workflows WHERE workflow_id = $1", wf_id)
        )
        assert (wf["tenant"], wf["latest_version"]) == (tenant, "v1")
        version = await pg.fetchrow("SELECT * FROM workflow_versions WHERE workflow_id = $1", wf_id)
        assert version["definition"] is not None

        offsets = await pg.fetch("SELECT * FROM projection_offsets WHERE projection = 'test'")
        assert {r["topic"] for r in offsets} >= {projector.runs_topic, projector.workflows_topic}

        await eventually(lambda: _assert_in(run_id, notified), timeout=10)

        # Crash (no clean shutdown) and restart: nothing is applied twice.
        projector.kill()
        await bus.append(projector.runs_topic, events[4])  # the duplicate once more
        projector.start()
        warning = RunWarning(
            aggregate_id=run_id,
            correlation_id=run_id,
            actor=system_actor("test", tenant=tenant),
            payload=RunWarningPayload(message="after restart"),
        )
        await bus.append(projector.runs_topic, warning)

        async def warning_seen() -> None:
            row = await pg.fetchrow("SELECT event_count FROM runs WHERE run_id = $1", run_id)
            assert row["event_count"] == 7

        await eventually(warning_seen, timeout=60)
        node = await pg.fetchrow("SELECT successes FROM node_executions WHERE run_id = $1", run_id)
        assert node["successes"] == 1
        seqs = await pg.fetch("SELECT seq FROM run_events WHERE run_id = $1 ORDER BY seq", run_id)
        assert [r["seq"] for r in seqs] == [1, 2, 3, 4, 5, 6, 7]
        assert await pg.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id) == "COMPLETED"
    finally:
        await listener.close()


async def test_poison_is_noted_and_skipped(
    pg: asyncpg.Connection, bus: EventBus, projector: Any
) -> None:
    run_id = f"run-{uuid.uuid4()}"
    position = await bus.send(projector.runs_topic, run_id.encode(), b"{not json", [])
    await bus.append_many(projector.runs_topic, _run_events(run_id, "acme")[:2])

    async def both() -> None:
        reason = await pg.fetchval(
            "SELECT reason FROM projection_poison"
            ' WHERE topic = $1 AND partition = $2 AND "offset" = $3',
            position.topic,
            position.partition,
            position.offset,
        )
        assert reason and "JSON" in reason
        assert await pg.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id) == "RUNNING"

    await eventually(both, timeout=60)


async def test_a_record_postgres_refuses_is_parked_and_the_read_side_goes_on(
    pg: asyncpg.Connection, bus: EventBus, projector: Any
) -> None:
    """A NUL in a run's input (PostgreSQL's jsonb refuses it) in the middle of a batch of
    good events: the record is parked with the reason, the run's row says so, and the runs
    around it, in the same batch and after it, are all projected."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    before, bad, after = (f"run-{uuid.uuid4()}" for _ in range(3))
    bad_events = _run_events(bad, tenant)
    submitted = bad_events[0]
    assert isinstance(submitted, RunSubmitted)
    bad_events[0] = submitted.model_copy(
        update={"payload": submitted.payload.model_copy(update={"input": {"s": "a\x00b"}})}
    )
    await bus.append_many(
        projector.runs_topic,
        [*_run_events(before, tenant), *bad_events, *_run_events(after, tenant)],
    )

    async def all_projected() -> None:
        rows = await pg.fetch(
            "SELECT run_id, status, input, projection_error FROM runs"
            " WHERE run_id = ANY($1::text[])",
            [before, bad, after],
        )
        by_id = {r["run_id"]: r for r in rows}
        assert by_id.keys() == {before, bad, after}
        assert by_id[before]["status"] == by_id[after]["status"] == "COMPLETED"
        assert by_id[before]["projection_error"] is None
        # The refused submission left a row (from what the event says besides its input),
        # and every later event of that run was projected onto it.
        assert by_id[bad]["status"] == "COMPLETED"
        assert by_id[bad]["input"] is None
        assert "run.submitted" in by_id[bad]["projection_error"]

    await eventually(all_projected, timeout=60)
    parked = await pg.fetch(
        "SELECT event_type, aggregate_id, reason FROM projection_poison WHERE aggregate_id = $1",
        bad,
    )
    assert [(r["event_type"], r["aggregate_id"]) for r in parked] == [("run.submitted", bad)]
    assert "0000" in parked[0]["reason"]  # PostgreSQL's own words: \u0000 cannot be stored
    seqs = await pg.fetch("SELECT seq FROM run_events WHERE run_id = $1 ORDER BY seq", bad)
    assert len(seqs) == 5  # 7 events, one a duplicate, one parked


async def test_throughput(
    pg: asyncpg.Connection, bus: EventBus, projector: Any, record_property: Any
) -> None:
    """Prints events/s for a backlog of synthetic events (a figure, not an assertion)."""
    marker = f"run-{uuid.uuid4()}"
    await bus.append_many(projector.runs_topic, _run_events(marker, "bench")[:1])
    await eventually(
        lambda: _fetch_one(pg, "SELECT 1 FROM runs WHERE run_id = $1", marker), timeout=120
    )
    projector.stop()  # let a backlog build up, then time the catch-up

    runs = [f"run-{uuid.uuid4()}" for _ in range(3000)]
    events = [ev for r in runs for ev in _run_events(r, "bench")]  # 7 per run, 1 duplicate
    distinct = len({e.event_id for e in events})
    for i in range(0, len(events), 2000):
        await bus.append_many(projector.runs_topic, events[i : i + 2000])

    async def all_there() -> None:
        n = await pg.fetchval(
            "SELECT count(*) FROM run_events WHERE run_id = ANY($1::text[])", runs
        )
        assert n == distinct, n

    started = time.perf_counter()
    projector.start()
    await eventually(all_there, timeout=300, interval=0.05)
    elapsed = time.perf_counter() - started
    rate = len(events) / elapsed
    record_property("projection_events_per_s", round(rate))
    print(
        f"\nprojection catch-up: {len(events)} events ({distinct} distinct, {len(runs)} runs)"
        f" in {elapsed:.2f}s incl. process start = {rate:.0f} events/s"
    )
    completed = await pg.fetchval(
        "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[]) AND status = 'COMPLETED'", runs
    )
    assert completed == len(runs)
    successes = await pg.fetchval(
        "SELECT max(successes) FROM node_executions WHERE run_id = ANY($1::text[])", runs
    )
    assert successes == 1


async def _fetch_one(pg: asyncpg.Connection, sql: str, arg: str) -> asyncpg.Record:
    row = await pg.fetchrow(sql, arg)
    assert row is not None
    return row


def _assert_in(item: str, items: list[str]) -> None:
    assert item in items, f"{item} not among {len(items)} notifications"


async def test_sigterm_stops_a_projector_still_waiting_for_its_topics(
    stack: Settings, unique: str
) -> None:
    # Topics that do not exist: the projector waits for them, and must still obey SIGTERM.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AOB_LOG_LEVEL": "INFO"}
    argv = [
        sys.executable,
        "-m",
        "projections",
        "--schema",
        f"t_{unique[:16]}",
        "--name",
        f"wait-{unique[:8]}",
        "--topic-prefix",
        f"absent-{unique[:8]}",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines: list[bytes] = []
        assert proc.stdout is not None
        while b"waiting for topics" not in b"".join(lines):
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, b"".join(lines).decode(errors="replace")
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
