"""Approvals and token usage in the read model, folded from the events the coordinator and
the workers really append (driven through the decider), so that the two stay in step."""

from __future__ import annotations

from projections.runs import RunFold
from run_model import evolve
from run_model.testing import EPOCH, approval_submitted, cancel_requested
from schemas.envelope import deterministic_id, system_actor
from schemas.events import ModelCalled, ModelCalledPayload, TokenUsage
from tests.unit.test_decider import Harness
from tests.unit.test_decider_approvals import waiting


def fold(h: Harness) -> RunFold:
    f = RunFold()
    for ev in h.log:
        f.apply(ev)
    return f


def test_run_status_matches_the_coordinator_after_every_event() -> None:
    h = waiting()
    h.feed(approval_submitted("run-1", "review", "rejected", tag="1"))
    h.feed(approval_submitted("run-1", "review", "approved", by="bob", tag="2"))
    h.succeed("drop")
    f, state = RunFold(), None
    seen = set()
    for ev in h.log:
        f.apply(ev)
        state = evolve(state, ev)
        assert state is not None
        seen.add(state.status.value)
        assert f.runs["run-1"].status == state.status.value, ev.type
        for node_id, node in state.nodes.items():
            assert f.nodes[("run-1", node_id)].status == node.status.value, (ev.type, node_id)
    assert {"RUNNING", "WAITING", "COMPLETED"} <= seen


def test_an_approval_row_records_the_request_the_decision_and_refusals() -> None:
    h = waiting(timeout_s=60, default="rejected")
    f = fold(h)
    a = f.approvals[("run-1", "review")]
    assert (a.status, a.prompt, a.default_outcome) == ("WAITING", "decide review", "rejected")
    assert a.due_at is not None
    h.feed(approval_submitted("run-1", "review", "approved", by="alice", tag="1"))
    h.feed(approval_submitted("run-1", "review", "rejected", by="bob", tag="2"))
    f = fold(h)
    a = f.approvals[("run-1", "review")]
    assert (a.status, a.decision, a.decided_by, a.timed_out) == (
        "APPROVED",
        "approved",
        "alice",
        False,
    )
    assert [r["reason"] for r in a.refusals] == [
        "node 'review' was decided already: approved by alice"
    ]
    node = f.nodes[("run-1", "review")]
    assert node.status == "SUCCEEDED"
    assert node.output["decision"] == "approved"


def test_a_cancelled_run_leaves_its_waiting_approval_cancelled() -> None:
    h = waiting()
    h.feed(cancel_requested("run-1"))
    f = fold(h)
    assert f.approvals[("run-1", "review")].status == "CANCELLED"
    assert f.runs["run-1"].status == "CANCELLED"


def test_token_usage_is_summed_over_model_calls_of_every_attempt() -> None:
    f = fold(waiting())
    for attempt, turn, tokens in [(1, 1, 100), (1, 2, 50), (2, 1, 7)]:
        f.apply(
            ModelCalled(
                event_id=deterministic_id("call", str(attempt), str(turn)),
                aggregate_id="run-1",
                occurred_at=EPOCH,
                actor=system_actor("worker:agent", "acme"),
                payload=ModelCalledPayload(
                    node_id="draft",
                    attempt=attempt,
                    turn=turn,
                    model="m",
                    usage=TokenUsage(
                        prompt_tokens=tokens,
                        completion_tokens=1,
                        total_tokens=tokens + 1,
                        cached_tokens=tokens // 2,
                    ),
                ),
            )
        )
    draft = f.nodes[("run-1", "draft")]
    assert (draft.prompt_tokens, draft.completion_tokens, draft.total_tokens) == (157, 3, 160)
    assert draft.cached_tokens == 50 + 25 + 3
    assert draft.status == "SUCCEEDED"  # usage changes no status
