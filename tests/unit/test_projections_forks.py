"""A fork's rows in the read model, folded from the events the coordinator and workers
really append (driven through the decider): they agree with the coordinator's state."""

from __future__ import annotations

from projections.runs import RunFold
from run_model import NodeStatus
from run_model.testing import approval_requested, approval_submitted, run_forked, started
from tests.unit.test_decider import Harness
from tests.unit.test_decider_approvals import waiting
from tests.unit.test_decider_forks import Fork, chain, fork_of


def folded(*logs: list) -> RunFold:
    f = RunFold()
    for log in logs:
        for ev in log:
            f.apply(ev)
    return f


def agree(f: RunFold, h: Harness) -> None:
    """The read model's statuses are the coordinator's, run and nodes."""
    run_id = h.run.run_id
    assert f.runs[run_id].status == h.run.status.value
    for node_id, node in h.run.nodes.items():
        assert f.nodes[(run_id, node_id)].status == node.status.value, node_id


def test_a_fork_row_keeps_finished_nodes_and_resets_the_rest() -> None:
    h = chain()
    f = fork_of(h, run_input={"topic": "new"}, keep_input=False)
    rows = folded(h.log, f.log[:1])
    run = rows.runs["fork-1"]
    assert (run.status, run.input, run.event_count) == ("PENDING", {"topic": "new"}, 1)
    assert run.workflow_id == rows.runs["run-1"].workflow_id
    assert [(x.run_id, x.forked_from, x.forked_at_seq) for x in rows.forks] == [
        ("fork-1", "run-1", len(h.log))
    ]
    a, b = rows.nodes[("fork-1", "a")], rows.nodes[("fork-1", "b")]
    source_a = rows.nodes[("run-1", "a")]
    assert (a.status, a.output, a.attempts, a.finished_at) == (
        "SUCCEEDED",
        {"made": "by a"},
        1,
        source_a.finished_at,
    )
    assert (b.status, b.attempts, b.started_at) == ("PENDING", 0, None)
    assert [(v.run_id, v.seq) for v in rows.new_versions] == [("run-1", 0), ("fork-1", 0)]
    # The source's rows are its own.
    assert rows.nodes[("run-1", "b")].status == "RUNNING"
    agree(folded(h.log, f.log), f)


def test_a_waiting_approval_is_asked_again_and_the_fork_row_follows_the_coordinator() -> None:
    h = waiting()
    f = fork_of(h)
    rows = folded(h.log, f.log)
    assert ("fork-1", "review") not in rows.approvals  # the fork's request makes it
    assert rows.approvals[("run-1", "review")].status == "WAITING"
    task = f.open_tasks.pop("review")
    f.feed(started(task))
    f.feed(approval_requested(task))
    f.feed(approval_submitted("fork-1", "review", "rejected", by="bob"))
    f.succeed("drop")
    rows = folded(h.log, f.log)
    agree(rows, f)
    assert rows.approvals[("fork-1", "review")].status == "REJECTED"
    assert rows.approvals[("run-1", "review")].status == "WAITING"


def test_a_fork_of_a_fork_keeps_decided_approvals_and_its_own_origin() -> None:
    h = waiting()
    h.feed(approval_submitted("run-1", "review", "approved"))
    f = fork_of(h)
    ff = Fork(run_forked("fork-2", f.log, len(f.log))).h
    rows = folded(h.log, f.log, ff.log)
    agree(rows, ff)
    assert ff.status("review") is NodeStatus.SUCCEEDED
    assert rows.approvals[("fork-2", "review")].decision == "approved"
    assert rows.forks[-1].forked_from == "fork-1"
    assert rows.runs["fork-2"].event_count == len(ff.log)
