"""How the timeline reads the events of agent budgets."""

from __future__ import annotations

from cli.timeline import event_detail


def test_the_timeline_reads_turns_and_budgets() -> None:
    assert event_detail("run.turn_requested", {"turn": 4}) == "may turn 4 go?"
    granted = {"turn": 3, "spent": {"tokens": 600, "usd": 0.0}}
    assert event_detail("run.turn_granted", granted) == "turn 3 granted (600 tokens spent)"
    reason = "budget exceeded: 900 of 1000 tokens"
    assert event_detail("run.budget_exceeded", {"reason": reason}) == reason
    raised = {"budget": {"tokens": 2000, "usd": None}, "decided_by": "key-1"}
    assert event_detail("run.budget_raised", raised) == "to tokens 2000 by key-1"
