"""The read side of patches: the fold of PatchSubmitted / PatchApplied / PatchRejected into
``run_patches``, ``run_versions`` and node rows, and the CAS writes of patched versions."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from projections.errors import BlobWriteFailed
from projections.patch_rows import Blob
from projections.runs import RunFold
from projections.version_blobs import store_blobs
from schemas.canonical import json_ref
from schemas.compiler import compile_workflow
from schemas.envelope import Actor, Event
from schemas.events import (
    PatchApplied,
    PatchAppliedPayload,
    PatchRejected,
    PatchRejectedPayload,
    PatchSubmitted,
    PatchSubmittedPayload,
    RunStarted,
    RunStartedPayload,
)
from schemas.workflow import WorkflowDefinition
from tests.unit.test_projections import DEFINITION, Log, sched

PATCHED = WorkflowDefinition.model_validate(
    {
        "nodes": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop"},
            {"id": "c", "type": "transform", "config": {"output": {"n": 1}}},
        ],
        "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
    }
)
OPS = [{"op": "add", "path": "/nodes/-", "value": {"id": "c", "type": "transform"}}]
PERSON = Actor(kind="user", id="key-1", tenant="acme")


def submitted(log: Log, base: str | None = None) -> Event:
    ev = log(PatchSubmitted, PatchSubmittedPayload(patch=OPS, reason="add c", base_version=base))
    return ev.model_copy(update={"actor": PERSON})


def applied(
    log: Log, patch_id: str, before: WorkflowDefinition, after: WorkflowDefinition, **diff: Any
) -> Event:
    ir = compile_workflow(after)
    return log(
        PatchApplied,
        PatchAppliedPayload(
            patch_id=patch_id,
            from_version=compile_workflow(before).version,
            to_version=ir.version,
            definition=after.canonical(),
            ir=ir,
            definition_ref=json_ref(after.canonical()),
            ir_ref=json_ref(ir.model_dump(mode="json")),
            **diff,
        ),
    )


def rejected(log: Log, patch_id: str) -> Event:
    return log(
        PatchRejected,
        PatchRejectedPayload(
            patch_id=patch_id, reasons=["node 'a' already ran"], current_version="v0"
        ),
    )


def fold(events: list[Event], f: RunFold | None = None) -> RunFold:
    f = f or RunFold()
    for ev in events:
        f.apply(ev)
    return f


def test_submission_writes_version_zero_from_the_run_submitted() -> None:
    log = Log()
    f = fold([log.submitted()])
    (v0,) = f.new_versions
    assert (v0.seq, v0.version, v0.patch_id) == (0, compile_workflow(DEFINITION).version, None)
    assert v0.definition == DEFINITION.canonical()
    assert f.blobs == []  # version 0 was stored when the workflow was published


def test_an_applied_patch_adds_retypes_and_removes_nodes_and_moves_the_version() -> None:
    log = Log()
    first = submitted(log)
    events = [log.submitted(), log(RunStarted, RunStartedPayload(version="v")), sched(log, "a")]
    events += [first]
    diff = {"added_nodes": ["c"], "changed_nodes": ["b"]}
    events += [applied(log, first.event_id, DEFINITION, PATCHED, **diff)]
    f = fold(events)
    run = f.runs["r1"]
    assert run.version == compile_workflow(PATCHED).version
    assert run.status == "RUNNING"
    assert {k[1]: (n.node_type, n.status) for k, n in f.nodes.items()} == {
        "a": ("noop", "SCHEDULED"),
        "b": ("noop", "PENDING"),
        "c": ("transform", "PENDING"),
    }
    assert {("r1", "b"), ("r1", "c")} <= f.changed_nodes
    patch = f.patches[("r1", first.event_id)]
    assert (patch.status, patch.reason, patch.ops, patch.seq) == ("APPLIED", "add c", OPS, 4)
    assert (patch.submitted_by, patch.actor_kind) == ("key-1", "user")
    assert (patch.added_nodes, patch.changed_nodes, patch.removed_nodes) == (["c"], ["b"], [])
    assert patch.from_version == compile_workflow(DEFINITION).version
    assert patch.decided_at == events[-1].occurred_at
    v0, v1 = f.new_versions
    assert (v1.seq, v1.version, v1.patch_id, v1.from_version) == (
        1,
        run.version,
        first.event_id,
        v0.version,
    )
    assert [b.expected_ref for b in f.blobs] == [v1.definition_ref, v1.ir_ref]

    second = submitted(log, base=run.version)
    fold([second, applied(log, second.event_id, PATCHED, DEFINITION, removed_nodes=["c"])], f)
    assert ("r1", "c") not in f.nodes and ("r1", "c") in f.removed_nodes
    assert ("r1", "c") not in f.changed_nodes
    assert [v.seq for v in f.new_versions] == [0, 1, 2]
    assert f.runs["r1"].version == compile_workflow(DEFINITION).version


def test_version_seq_continues_from_what_is_stored() -> None:
    log = Log()
    log.submitted()
    patch = submitted(log)
    f = RunFold(version_seq={"r1": 3})
    fold([patch, applied(log, patch.event_id, DEFINITION, PATCHED, added_nodes=["c"])], f)
    assert [v.seq for v in f.new_versions] == [4]


def test_a_rejected_patch_keeps_the_run_as_it_was() -> None:
    log = Log()
    patch = submitted(log)
    f = fold([log.submitted(), patch, rejected(log, patch.event_id)])
    row = f.patches[("r1", patch.event_id)]
    assert (row.status, row.rejected_reasons, row.current_version) == (
        "REJECTED",
        ["node 'a' already ran"],
        "v0",
    )
    assert f.runs["r1"].version == compile_workflow(DEFINITION).version
    assert len(f.new_versions) == 1 and f.blobs == []


def test_a_verdict_before_its_submission_still_makes_the_row_and_the_submission_fills_it() -> None:
    log = Log()
    patch = submitted(log)  # built first, folded last
    f = fold([log.submitted(), rejected(log, patch.event_id), patch])
    row = f.patches[("r1", patch.event_id)]
    assert (row.status, row.reason, row.submitted_by, row.seq) == ("REJECTED", "add c", "key-1", 3)


def test_only_the_first_verdict_counts() -> None:
    log = Log()
    patch = submitted(log)
    verdict = applied(log, patch.event_id, DEFINITION, PATCHED, added_nodes=["c"])
    f = fold([log.submitted(), patch, verdict, rejected(log, patch.event_id)])
    assert f.patches[("r1", patch.event_id)].status == "APPLIED"
    # A second PatchApplied of the same patch (another id) adds no version either.
    fold([verdict.model_copy(update={"event_id": "other"})], f)
    assert [v.seq for v in f.new_versions] == [0, 1]


class FakeCas:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.stored: list[Any] = []

    async def put_json(self, value: Any) -> tuple[str, int]:
        if self.fail:
            raise OSError("connection refused")
        self.stored.append(value)
        return json_ref(value), 1


async def test_blobs_are_stored_once_each_and_a_wrong_ref_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cas = FakeCas()
    good = Blob(json_ref({"a": 1}), {"a": 1}, "definition")
    wrong = Blob(json_ref({"b": 1}), {"b": 2}, "IR")
    with caplog.at_level(logging.ERROR):
        await store_blobs(cas, [good, good, wrong])
    assert cas.stored == [{"a": 1}, {"b": 2}]
    assert "the IR was stored as" in caplog.text


async def test_a_failed_blob_write_is_a_retryable_error() -> None:
    with pytest.raises(BlobWriteFailed, match="connection refused"):
        await store_blobs(FakeCas(fail=True), [Blob(json_ref(1), 1, "definition")])
