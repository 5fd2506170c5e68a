"""``processors.recovery.rebuild``: a partition's records -> the states the agent had."""

from __future__ import annotations

from typing import Any

import pytest

from processors import recovery
from processors.recovery import Rebuilt, rebuild
from run_model import RunStatus, step
from run_model.testing import EPOCH, build_ir, patch_submitted, started, succeeded
from schemas.codec import encode_event
from schemas.envelope import Event
from tests.unit.test_decider import Harness


def raw(events: list[Event]) -> list[bytes | None]:
    return [encode_event(ev)[1] for ev in events]


def test_rebuilt_state_is_the_one_the_agent_had_and_finished_runs_keep_their_status() -> None:
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    half = Harness(ir)  # run-1: a succeeded, b scheduled
    half.succeed("a")
    done = Harness(ir, run_id="run-2")
    done.succeed("a")
    done.succeed("b")
    # The log as Kafka holds it: both runs interleaved, a poison record, and our own
    # decisions, which the rebuild recognises as echoes.
    records = [*raw(half.log[:3]), b"{not json", None, *raw(done.log), *raw(half.log[3:])]
    rebuilt = rebuild(records, clock=lambda: EPOCH)
    assert set(rebuilt.states) == {"run-1"}
    assert rebuilt.states["run-1"] == half.run
    assert rebuilt.finished == {"run-2": RunStatus.COMPLETED}


def test_records_before_the_submission_of_an_unknown_run_are_skipped() -> None:
    ir = build_ir({"a": "noop"}, [])
    h = Harness(ir)
    orphan = started(h.task("a")).model_copy(update={"aggregate_id": "run-x"})
    assert rebuild(raw([orphan]), clock=lambda: EPOCH) == Rebuilt()
    done = rebuild(raw([*h.log, succeeded(h.task("a"))]), clock=lambda: EPOCH)
    assert done == Rebuilt(finished={"run-1": RunStatus.COMPLETED})


def test_a_patched_run_is_rebuilt_at_its_patched_version() -> None:
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    h = Harness(ir)
    add = [
        {"op": "add", "path": "/nodes/-", "value": {"id": "x", "type": "noop"}},
        {"op": "add", "path": "/edges/-", "value": {"from": "a", "to": "x"}},
    ]
    h.feed(patch_submitted("run-1", add))
    h.feed(patch_submitted("run-1", [{"op": "remove", "path": "/nodes/0"}], tag="2"))
    h.succeed("a")  # b and the added x are scheduled
    rebuilt = rebuild(raw(h.log), clock=lambda: EPOCH)
    assert rebuilt.states["run-1"] == h.run
    assert len(h.run.patches) == 1
    assert set(h.run.nodes) == {"a", "b", "x"}


def test_a_record_the_decider_raises_on_fails_its_run_in_the_rebuild_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def step_with_a_bug(state: Any, event: Event, *args: Any) -> Any:
        if event.aggregate_id == "run-2":
            raise RuntimeError("a bug")
        return step(state, event, *args)

    monkeypatch.setattr(recovery, "step", step_with_a_bug)
    ir = build_ir({"a": "noop"}, [])
    fine, buggy = Harness(ir), Harness(ir, run_id="run-2")
    rebuilt = rebuild(raw([*buggy.log[:1], *fine.log]), clock=lambda: EPOCH)
    assert rebuilt.finished == {"run-2": RunStatus.FAILED}
    assert rebuilt.states == {"run-1": fine.run}
