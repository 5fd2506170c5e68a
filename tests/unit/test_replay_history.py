"""The replay tooling's pure parts: ``--at`` points of a run's history, and the run folded
to any of them through the coordinator's evolve."""

from __future__ import annotations

import pytest

from infra.run_log import Logged, PositionOutsideRun, RunNotInLog, run_partition, until
from replay.time_travel import describe, state_at
from run_model import step
from run_model.testing import EPOCH, build_ir, run_submitted, started, succeeded
from schemas.envelope import Event
from schemas.position import Position

TOPIC = "aob.runs.events"


def _recorded() -> list[Logged]:
    """The log of a run of ``a -> b`` as the coordinator and workers would write it, at
    offsets 100, 102, 104, … of partition 3 (other runs' records in between)."""
    ir = build_ir({"a": "noop", "b": "noop"}, [("a", "b")])
    log: list[Event] = []
    pending: list[Event] = [run_submitted("r1", ir)]
    state = None
    while pending:
        event = pending.pop(0)
        log.append(event)
        state, decision = step(state, event, EPOCH)
        pending += decision.events
        for task in decision.tasks:
            pending += [started(task), succeeded(task, {"node": task.node_id})]
    return [Logged(i + 1, Position(TOPIC, 3, 100 + 2 * i), e) for i, e in enumerate(log)]


def test_at_a_seq_or_a_position_is_the_same_point() -> None:
    history = _recorded()
    for k, logged in enumerate(history, start=1):
        assert until(history, str(k)) == history[:k]
        assert until(history, logged.position.token()) == history[:k]
        # An offset between two of the run's records (another run's) is the earlier point.
        assert (
            until(history, Position(TOPIC, 3, logged.position.offset + 1).token()) == (history[:k])
        )


@pytest.mark.parametrize(
    "at",
    ["0", "99", f"{TOPIC}:4:100", f"{TOPIC}:3:99", "later", f"{TOPIC}:3:x", "²", "9" * 5000],
)
def test_points_outside_the_run_are_refused_with_the_valid_range(at: str) -> None:
    history = _recorded()
    with pytest.raises(PositionOutsideRun, match=f"the run has {len(history)} events"):
        until(history, at)


def test_the_fold_shows_each_point_as_the_coordinator_knew_it() -> None:
    history = _recorded()
    kinds = [h.event.type for h in history]
    first_success = kinds.index("run.node_succeeded") + 1
    at = state_at(history[:first_success])
    assert (at.status.value, at.nodes["a"].status.value, at.nodes["b"].status.value) == (
        "RUNNING",
        "SUCCEEDED",
        "PENDING",
    )
    assert at.nodes["a"].output == {"node": "a"}
    view = describe(state_at(history), history)
    assert view["status"] == "COMPLETED" and view["output"] == {"b": {"node": "b"}}
    assert view["at"] == {
        "seq": len(history),
        "position": history[-1].position.token(),
        "event_id": history[-1].event.event_id,
        "type": "run.completed",
        "occurred_at": history[-1].event.occurred_at.isoformat(),
    }
    assert [e["type"] for e in view["events"]] == kinds
    assert {n: v["status"] for n, v in view["nodes"].items()} == {
        "a": "SUCCEEDED",
        "b": "SUCCEEDED",
    }


def test_a_history_without_its_submission_has_no_state() -> None:
    with pytest.raises(RunNotInLog, match="nothing to fold"):
        state_at(_recorded()[1:2])


def test_the_partition_is_the_producers() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for run_id in ("r1", "d5412bea-cd52-420b-9153-9c4eda354b79", "x" * 40):
        assert run_partition(run_id, 12) == DefaultPartitioner()(
            run_id.encode(), list(range(12)), []
        )
