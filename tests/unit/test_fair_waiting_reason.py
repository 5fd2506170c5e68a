"""``run.node_queued``: a worker tells the run once why an attempt waits; the coordinator
folds it as a fact that changes nothing, the read model keeps the reason on the SCHEDULED
node until it moves on, GraphQL gives it as ``waitingReason``, the timeline shows it."""

from __future__ import annotations

from typing import Any

from cli.timeline import event_detail
from projections.runs import RunFold
from query_api.node_types import Node
from read_model.rows import NodeRow
from run_model import fold, step
from run_model.testing import EPOCH, started
from schemas import reports
from schemas.compiler import compile_workflow
from schemas.events import NodeQueued, RunCancelled, RunCancelledPayload
from tests.unit.test_decider import Harness
from tests.unit.test_fair_node_fields import definition


def queued_for(h: Harness, node_id: str, waiting_for: Any, reason: str) -> NodeQueued:
    return reports.queued(h.task(node_id), "w-1", waiting_for, reason)


def test_a_wait_is_told_once_per_attempt_and_kind_of_limit() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    a = queued_for(h, "fetch", "tenant_slots", "tenant acme has 16 of 16 http slots in use")
    again = queued_for(h, "fetch", "tenant_slots", "tenant acme has 16 of 16 http slots in use")
    key = queued_for(h, "fetch", "concurrency_key", "concurrency key 'c7': 2 of 2 running")
    assert a.event_id == again.event_id != key.event_id
    assert a.causation_id == h.task("fetch").task_id and a.aggregate_id == "run-1"


def test_the_coordinator_folds_a_wait_as_a_fact_that_changes_nothing() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    before = h.run
    decided = h.feed(queued_for(h, "fetch", "rate_limit", "rate limit partner-api: next call"))
    assert decided == []
    assert h.run.nodes == before.nodes and h.run.status == before.status


def test_a_wait_gives_the_coordinator_the_same_state_back_so_nothing_is_stored_again() -> None:
    # A flood of waiting tasks must not rewrite as many states (run_model.evolve.NO_EFFECT):
    # the coordinator stores a state only when step gives back another object.
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    wait = queued_for(h, "fetch", "tenant_slots", "tenant acme has 16 of 16 http slots in use")
    state, decision = step(h.run, wait, EPOCH)
    assert state is h.run and decision.events == [] and decision.tasks == []
    assert wait.event_id not in h.run.applied


class Rows:
    """A run of one keyed node, folded by the projection as the projector does."""

    def __init__(self) -> None:
        self.h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
        self.fold = RunFold()
        for event in self.h.log:
            self.fold.apply(event)

    def apply(self, event: Any) -> NodeRow:
        self.fold.apply(event)
        return self.fold.nodes[("run-1", "fetch")]


def test_the_read_model_shows_why_a_scheduled_node_waits_until_it_moves_on() -> None:
    rows = Rows()
    reason = "concurrency key 'c7': 2 of 2 running"
    row = rows.apply(queued_for(rows.h, "fetch", "concurrency_key", reason))
    assert (row.status, row.waiting_reason) == ("SCHEDULED", reason)
    assert ("run-1", "fetch") in rows.fold.changed_nodes
    row = rows.apply(started(rows.h.task("fetch")))
    assert (row.status, row.waiting_reason) == ("RUNNING", None)


def test_a_wait_told_after_the_node_moved_on_changes_nothing() -> None:
    rows = Rows()
    rows.apply(started(rows.h.task("fetch")))
    late = queued_for(rows.h, "fetch", "tenant_slots", "tenant acme has 16 of 16 http slots")
    row = rows.apply(late)
    assert (row.status, row.waiting_reason) == ("RUNNING", None)


def test_a_wait_of_an_older_attempt_changes_nothing() -> None:
    rows = Rows()
    old = queued_for(rows.h, "fetch", "tenant_slots", "old")
    row = rows.fold.nodes[("run-1", "fetch")]
    row.attempts = 2  # a retry was scheduled meanwhile
    assert rows.apply(old).waiting_reason is None


def test_a_run_that_ends_leaves_no_node_waiting() -> None:
    rows = Rows()
    rows.apply(queued_for(rows.h, "fetch", "rate_limit", "rate limit partner-api: next call"))
    cancelled = RunCancelled(
        aggregate_id="run-1",
        correlation_id="run-1",
        actor=rows.h.log[0].actor,
        payload=RunCancelledPayload(reason="enough"),
    )
    assert rows.apply(cancelled).waiting_reason is None


def test_graphql_gives_the_reason_as_waiting_reason() -> None:
    row = {
        "node_id": "fetch",
        "node_type": "http",
        "status": "SCHEDULED",
        "attempts": 1,
        "started_at": None,
        "finished_at": None,
        "output_ref": None,
        "error": None,
        "output": None,
        "waiting_reason": "rate limit openai: next call in 3.2 s",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cached_tokens": 0,
        "cost_usd": 0.0,
    }
    assert Node.of(row).waiting_reason == "rate limit openai: next call in 3.2 s"


def test_the_model_of_a_run_is_the_same_with_or_without_waits() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    wait = queued_for(h, "fetch", "tenant_slots", "busy")
    plain, waited = fold(None, h.log), fold(None, [*h.log, wait])
    assert plain is not None and waited is not None
    assert plain.nodes == waited.nodes and plain.status == waited.status


def test_the_timeline_shows_why_an_attempt_waited() -> None:
    payload = {"attempt": 1, "reason": "rate limit openai: next call in 3.2 s"}
    assert event_detail("run.node_queued", payload) == (
        "attempt 1 waits: rate limit openai: next call in 3.2 s"
    )
