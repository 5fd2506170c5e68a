"""The projector and patches, against the real Kafka, Postgres and MinIO: run_patches,
run_versions, node rows following an applied patch, one NOTIFY, and the patched version's
definition and IR in the CAS under the event's refs."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from cas import ContentStore
from infra.bus import EventBus
from infra.settings import Settings
from schemas.canonical import json_ref
from schemas.compiler import compile_workflow
from schemas.envelope import Actor, Event, system_actor
from schemas.events import (
    PatchApplied,
    PatchAppliedPayload,
    PatchRejected,
    PatchRejectedPayload,
    PatchSubmitted,
    PatchSubmittedPayload,
    RunStarted,
    RunStartedPayload,
    RunSubmitted,
    RunSubmittedPayload,
)
from schemas.workflow import WorkflowDefinition
from tests.helpers import eventually

pytestmark = pytest.mark.connected

BEFORE = WorkflowDefinition.model_validate(
    {
        "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
        "edges": [{"from": "a", "to": "b"}],
    }
)
ADD_C = [
    {"op": "add", "path": "/nodes/-", "value": {"id": "c", "type": "noop"}},
    {"op": "replace", "path": "/nodes/1", "value": {"id": "b", "type": "transform"}},
    {"op": "remove", "path": "/edges/0"},
]


def _after(tag: str) -> WorkflowDefinition:
    # A fresh node config per test, so the blobs are new in the CAS (not left by another run).
    return WorkflowDefinition.model_validate(
        {
            "nodes": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "transform", "config": {"output": {"tag": tag}}},
                {"id": "c", "type": "noop"},
            ],
            "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
        }
    )


def _events(run_id: str, tenant: str, after: WorkflowDefinition) -> list[Event]:
    system = system_actor("test", tenant=tenant)
    person = Actor(kind="user", id="key-7", tenant=tenant)
    agent = Actor(kind="agent", id=f"{run_id}/a", tenant=tenant)
    before_ir, after_ir = compile_workflow(BEFORE), compile_workflow(after)

    def ev(cls: type[Event], payload: Any, actor: Actor = system) -> Event:
        return cls(aggregate_id=run_id, correlation_id=run_id, actor=actor, payload=payload)

    submitted = ev(
        RunSubmitted,
        RunSubmittedPayload(
            workflow_id=f"wf-{run_id}",
            workflow_name="demo",
            version=before_ir.version,
            definition=BEFORE.canonical(),
            ir=before_ir,
            definition_ref=json_ref(BEFORE.canonical()),
            ir_ref=json_ref(before_ir.model_dump(mode="json")),
        ),
    )
    good = ev(PatchSubmitted, PatchSubmittedPayload(patch=ADD_C, reason="add c"), person)
    bad = ev(
        PatchSubmitted,
        PatchSubmittedPayload(
            patch=[{"op": "remove", "path": "/nodes/0"}], reason="drop a", node_id="a", attempt=1
        ),
        agent,
    )
    applied = ev(
        PatchApplied,
        PatchAppliedPayload(
            patch_id=good.event_id,
            from_version=before_ir.version,
            to_version=after_ir.version,
            definition=after.canonical(),
            ir=after_ir,
            definition_ref=json_ref(after.canonical()),
            ir_ref=json_ref(after_ir.model_dump(mode="json")),
            added_nodes=["c"],
            changed_nodes=["b"],
        ),
    )
    rejected = ev(
        PatchRejected,
        PatchRejectedPayload(
            patch_id=bad.event_id,
            reasons=["node 'a' has already run"],
            current_version=after_ir.version,
        ),
    )
    started = ev(RunStarted, RunStartedPayload(version=before_ir.version))
    return [submitted, started, good, applied, bad, rejected, applied]  # applied twice


async def test_patches_versions_nodes_and_blobs(
    pg: asyncpg.Connection, bus: EventBus, projector: Any, stack: Settings
) -> None:
    run_id, tenant = f"run-{uuid.uuid4()}", f"t-{uuid.uuid4().hex[:8]}"
    after = _after(uuid.uuid4().hex)
    listener = await asyncpg.connect(stack.postgres_dsn)
    notified: list[str] = []
    await listener.add_listener("aob_run_changed", lambda *args: notified.append(args[3]))
    try:
        events = _events(run_id, tenant, after)
        good, applied, bad = events[2], events[3], events[4]
        await bus.append_many(projector.runs_topic, events)

        async def projected() -> list[asyncpg.Record]:
            rows = await pg.fetch(
                "SELECT * FROM run_patches WHERE run_id = $1 ORDER BY seq", run_id
            )
            assert [r["status"] for r in rows] == ["APPLIED", "REJECTED"], rows
            return rows

        first, second = await eventually(projected, timeout=60)
        assert await pg.fetchval("SELECT event_count FROM runs WHERE run_id = $1", run_id) == 6
        assert (first["patch_id"], first["reason"], first["submitted_by"]) == (
            good.event_id,
            "add c",
            "key-7",
        )
        assert (first["actor_kind"], first["to_version"]) == ("user", applied.payload.to_version)
        assert first["decided_at"] is not None and first["submitted_at"] is not None
        assert (second["patch_id"], second["actor_kind"], second["node_id"]) == (
            bad.event_id,
            "agent",
            "a",
        )
        assert "already run" in second["rejected_reasons"]

        run = await pg.fetchrow("SELECT version, status FROM runs WHERE run_id = $1", run_id)
        assert (run["version"], run["status"]) == (applied.payload.to_version, "RUNNING")
        nodes = await pg.fetch(
            "SELECT node_id, node_type, status FROM node_executions WHERE run_id = $1"
            " ORDER BY node_id",
            run_id,
        )
        assert [tuple(n) for n in nodes] == [
            ("a", "noop", "PENDING"),
            ("b", "transform", "PENDING"),
            ("c", "noop", "PENDING"),
        ]
        versions = await pg.fetch(
            "SELECT seq, version, patch_id, definition_ref, ir_ref FROM run_versions"
            " WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        assert [(v["seq"], v["patch_id"]) for v in versions] == [(0, None), (1, good.event_id)]
        assert versions[1]["version"] == applied.payload.to_version

        cas = ContentStore.from_settings(stack)
        assert await cas.get_json(applied.payload.definition_ref) == after.canonical()
        ir = await cas.get_json(applied.payload.ir_ref)
        assert ir == applied.payload.ir.model_dump(mode="json")

        async def notified_once() -> None:
            assert run_id in notified

        await eventually(notified_once, timeout=10)
    finally:
        await listener.close()


async def test_removed_nodes_disappear(
    pg: asyncpg.Connection, bus: EventBus, projector: Any
) -> None:
    run_id, tenant = f"run-{uuid.uuid4()}", f"t-{uuid.uuid4().hex[:8]}"
    after = _after(uuid.uuid4().hex)
    events = _events(run_id, tenant, after)[:4]
    after_ir, before_ir = compile_workflow(after), compile_workflow(BEFORE)
    back = PatchSubmitted(
        aggregate_id=run_id,
        correlation_id=run_id,
        actor=system_actor("test", tenant=tenant),
        payload=PatchSubmittedPayload(patch=[], reason="undo", base_version=after_ir.version),
    )
    undone = PatchApplied(
        aggregate_id=run_id,
        correlation_id=run_id,
        actor=system_actor("test", tenant=tenant),
        payload=PatchAppliedPayload(
            patch_id=back.event_id,
            from_version=after_ir.version,
            to_version=before_ir.version,
            definition=BEFORE.canonical(),
            ir=before_ir,
            definition_ref=json_ref(BEFORE.canonical()),
            ir_ref=json_ref(before_ir.model_dump(mode="json")),
            removed_nodes=["c"],
            changed_nodes=["b"],
        ),
    )
    await bus.append_many(projector.runs_topic, [*events, back, undone])

    async def undone_seen() -> None:
        rows = await pg.fetch(
            "SELECT node_id, node_type FROM node_executions WHERE run_id = $1 ORDER BY node_id",
            run_id,
        )
        assert [tuple(r) for r in rows] == [("a", "noop"), ("b", "noop")], rows

    await eventually(undone_seen, timeout=60)
    seqs = await pg.fetch("SELECT seq FROM run_versions WHERE run_id = $1 ORDER BY seq", run_id)
    assert [r["seq"] for r in seqs] == [0, 1, 2]
