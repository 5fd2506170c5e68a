"""``run.node_progress``: a node's own report of how its attempt goes (``job.progress`` in
the worker SDK). The coordinator folds it as a fact that changes nothing (and stores nothing
again), the projection keeps it in the run's event history only, the timeline shows it."""

from __future__ import annotations

from cli.timeline import event_detail
from projections.runs import RunFold
from run_model import step
from run_model.testing import EPOCH
from schemas import reports
from schemas.compiler import compile_workflow
from schemas.events import NodeProgress
from tests.unit.test_decider import Harness
from tests.unit.test_fair_node_fields import definition


def progress(h: Harness, seq: int, message: str, fraction: float | None = None) -> NodeProgress:
    return reports.progress(h.task("fetch"), seq, message, fraction)


def test_each_report_of_an_attempt_has_its_own_stable_id() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    first, again, second = progress(h, 1, "a"), progress(h, 1, "a"), progress(h, 2, "b")
    assert first.event_id == again.event_id != second.event_id
    assert first.aggregate_id == "run-1" and first.causation_id == h.task("fetch").task_id


def test_a_long_or_hostile_message_is_made_fit_to_store() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    report = progress(h, 1, "a\x00b" + "x" * 5000)
    assert "\x00" not in report.payload.message
    assert len(report.payload.message) == reports.MAX_PROGRESS_CHARS


def test_the_coordinator_gives_the_same_state_back() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    report = progress(h, 1, "fetched 1 of 3", 1 / 3)
    state, decision = step(h.run, report, EPOCH)
    assert state is h.run and decision.events == [] and decision.tasks == []
    assert report.event_id not in h.run.applied


def test_the_read_side_counts_it_in_the_history_and_changes_no_node() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    fold = RunFold()
    for event in h.log:
        fold.apply(event)
    (run,) = fold.runs.values()
    before = (run.event_count, {k: (n.status, n.attempts) for k, n in fold.nodes.items()})
    fold.apply(progress(h, 1, "fetched 1 of 3"))
    after = (run.event_count, {k: (n.status, n.attempts) for k, n in fold.nodes.items()})
    assert after[0] == before[0] + 1 and after[1] == before[1]


def test_the_timeline_shows_the_message_and_how_far() -> None:
    assert event_detail(
        "run.node_progress", {"message": "fetched 40 of 120", "fraction": 1 / 3}
    ) == ("fetched 40 of 120 (33%)")
    assert event_detail("run.node_progress", {"message": "warming up"}) == "warming up"
