"""A map node's row in the read model, folded from the events the decider and the workers
append: the map's status and output are the coordinator's, and its items are listed with
their own statuses and attempts, untouched by the map's own row rules."""

from __future__ import annotations

from projections.runs import RunFold
from run_model.testing import run_forked
from tests.unit.test_decider_map import MapHarness, map_ir, names


def folded(*logs: list) -> RunFold:
    f = RunFold()
    for log in logs:
        for ev in log:
            f.apply(ev)
    return f


def test_the_map_row_lists_each_item_and_ends_as_the_coordinator_says() -> None:
    h = MapHarness(map_ir(max_parallel=2, max_attempts=2, failure="collect"))
    h.succeed("fetch", output=names(3))
    rows = folded(h.log)
    each = rows.nodes[("run-1", "each")]
    assert (each.status, each.node_type, each.attempts) == ("RUNNING", "map", 1)
    assert sorted(each.items) == ["0", "1"]
    assert each.items["0"]["status"] == "SCHEDULED"
    h.fail("each", 0)  # retried at once: attempt 2
    h.succeed("each", 1, "b")
    h.fail("each", 0)  # failed for good: collected
    h.succeed("each", 2, "c")
    rows = folded(h.log)
    each = rows.nodes[("run-1", "each")]
    assert each.status == h.run.nodes["each"].status.value == "SUCCEEDED"
    assert each.output == h.run.nodes["each"].output
    assert each.successes == 1  # the items' successes are theirs, not the map's
    assert {k: (v["status"], v["attempts"]) for k, v in each.items.items()} == {
        "0": ("FAILED", 2),
        "1": ("SUCCEEDED", 1),
        "2": ("SUCCEEDED", 1),
    }
    assert each.items["1"]["output"] == "b"
    assert each.items["0"]["error"] == "item 0 broke"
    assert rows.runs["run-1"].status == h.run.status.value


def test_a_fork_row_keeps_the_finished_items_only() -> None:
    h = MapHarness(map_ir(max_parallel=3))
    h.succeed("fetch", output=names(5))
    h.succeed("each", 1, "b")
    fork = run_forked("fork-1", h.log, len(h.log))
    rows = folded(h.log, [fork])
    each = rows.nodes[("fork-1", "each")]
    assert each.status == "PENDING"
    assert list(each.items) == ["1"] and each.items["1"]["output"] == "b"
