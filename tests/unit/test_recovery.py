"""``processors.recovery.rebuild``: a partition's records -> the states the agent had."""

from __future__ import annotations

from processors.recovery import rebuild
from processors.testing import EPOCH, build_ir, started, succeeded
from schemas.codec import encode_event
from schemas.envelope import Event
from tests.unit.test_decider import Harness


def raw(events: list[Event]) -> list[bytes | None]:
    return [encode_event(ev)[1] for ev in events]


def test_rebuilt_state_is_the_one_the_agent_had_and_finished_runs_are_dropped() -> None:
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    half = Harness(ir)  # run-1: a succeeded, b scheduled
    half.succeed("a")
    done = Harness(ir, run_id="run-2")
    done.succeed("a")
    done.succeed("b")
    # The log as Kafka holds it: both runs interleaved, a poison record, and our own
    # decisions, which the rebuild recognises as echoes.
    records = [*raw(half.log[:3]), b"{not json", None, *raw(done.log), *raw(half.log[3:])]
    states = rebuild(records, clock=lambda: EPOCH)
    assert set(states) == {"run-1"}
    assert states["run-1"] == half.run


def test_records_before_the_submission_of_an_unknown_run_are_skipped() -> None:
    ir = build_ir({"a": "noop"}, [])
    h = Harness(ir)
    orphan = started(h.task("a")).model_copy(update={"aggregate_id": "run-x"})
    assert rebuild(raw([orphan]), clock=lambda: EPOCH) == {}
    assert rebuild(raw([*h.log, succeeded(h.task("a"))]), clock=lambda: EPOCH) == {}
