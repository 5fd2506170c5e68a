"""What the projector keeps of the runs it wrote from their first event."""

from __future__ import annotations

from projections.known_runs import KnownRuns, Learnt


def _learnt(*writes: tuple[str, int, str]) -> Learnt:
    learnt = Learnt()
    for run_id, seq, event_id in writes:
        learnt.wrote(run_id, seq, event_id)
    return learnt


def test_a_run_is_known_from_the_batch_that_wrote_its_first_event() -> None:
    known = KnownRuns()
    known.commit(_learnt(("r1", 1, "e1"), ("r1", 2, "e2")), new_runs={"r1"})
    run = known.get("r1")
    assert run is not None
    assert (run.last_seq, run.event_ids) == (2, {"e1", "e2"})

    known.commit(_learnt(("r1", 3, "e3")), new_runs=set())
    assert (run.last_seq, run.event_ids) == (3, {"e1", "e2", "e3"})


def test_a_run_with_history_written_before_is_not_learnt() -> None:
    known = KnownRuns()
    known.commit(_learnt(("old", 8, "e8")), new_runs=set())
    assert known.get("old") is None
    assert len(known) == 0


def test_a_run_with_too_many_events_is_left_to_postgres() -> None:
    known = KnownRuns(events_per_run=3)
    known.commit(_learnt(("r1", 1, "e1"), ("r1", 2, "e2")), new_runs={"r1"})
    assert known.get("r1") is not None
    known.commit(_learnt(("r1", 3, "e3"), ("r1", 4, "e4")), new_runs=set())
    assert known.get("r1") is None
    known.commit(_learnt(("r1", 5, "e5")), new_runs=set())
    assert known.get("r1") is None, "a run that left does not come back: its history is gone"


def test_the_runs_used_least_lately_make_room() -> None:
    known = KnownRuns(runs=2)
    known.commit(_learnt(("a", 1, "a1")), new_runs={"a"})
    known.commit(_learnt(("b", 1, "b1")), new_runs={"b"})
    known.commit(_learnt(("a", 2, "a2")), new_runs=set())  # a is used again
    known.commit(_learnt(("c", 1, "c1")), new_runs={"c"})
    assert known.get("b") is None
    assert known.get("a") is not None
    assert known.get("c") is not None


def test_forgetting_drops_every_run_and_is_counted() -> None:
    known = KnownRuns()
    known.forget()
    assert known.forgotten == 0, "nothing known, nothing forgotten"
    known.commit(_learnt(("a", 1, "a1"), ("b", 1, "b1")), new_runs={"a", "b"})
    known.forget()
    assert (len(known), known.forgotten) == (0, 1)
