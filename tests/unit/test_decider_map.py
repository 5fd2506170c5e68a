"""The map node in the decider: items scheduled from events, at most ``max_parallel``
unfinished, outputs in item order, ``fail_fast`` and ``collect``, retries and deadlines per
item, the same ids on a replay, and a fork that reuses the items finished at its point."""

from __future__ import annotations

import random
from typing import Any

import pytest

from run_model import NodeStatus, RunState, RunStatus, step
from run_model.testing import (
    EPOCH,
    build_ir,
    cancel_requested,
    failed,
    run_forked,
    run_submitted,
    started,
    succeeded,
)
from run_model.timers import pending_timers, timer_fired
from schemas.envelope import Event
from schemas.events import (
    MapStarted,
    NodeFailed,
    NodeRetryPlanned,
    NodeScheduled,
    NodeSucceeded,
    RunCompleted,
    RunFailed,
)
from schemas.ir import IRNode, WorkflowIR
from schemas.tasks import NodeTask


def map_ir(
    *,
    over: str = "nodes.fetch.output.items",
    max_parallel: int = 3,
    failure: str = "fail_fast",
    max_attempts: int = 1,
    backoff_s: float = 0,
    timeout_s: float | None = None,
) -> WorkflowIR:
    """fetch -> each (map of transform) -> after."""
    ir = build_ir(
        {"fetch": "noop", "each": "map", "after": "noop"}, [("fetch", "each"), ("each", "after")]
    )
    inner: dict[str, Any] = {
        "type": "transform",
        "config": {"output": "{{ item.name }}"},
        "retry": {"max_attempts": max_attempts, "backoff_s": backoff_s},
    }
    if timeout_s is not None:
        inner["timeout_s"] = timeout_s
    config = {"over": over, "node": inner, "max_parallel": max_parallel, "failure": failure}
    nodes = dict(ir.nodes)
    nodes["each"] = IRNode(**{**nodes["each"].model_dump(), "config": config})
    return ir.model_copy(update={"nodes": nodes})


class MapHarness:
    """Feeds events through ``step``; open tasks by (node, item index)."""

    def __init__(
        self,
        ir: WorkflowIR,
        run_id: str = "run-1",
        first: Event | None = None,
        run_input: Any = None,
    ) -> None:
        self.state: RunState | None = None
        self.log: list[Event] = []
        self.open: dict[tuple[str, int | None], NodeTask] = {}
        self.running_max = 0
        self.feed(first or run_submitted(run_id, ir, run_input))

    def feed(self, event: Event) -> list[Event]:
        self.state, decision = step(self.state, event, EPOCH)
        self.log.append(event)
        self.log.extend(decision.events)
        for task in decision.tasks:
            self.open[(task.node_id, task.index)] = task
        items = [k for k in self.open if k[1] is not None]
        self.running_max = max(self.running_max, len(items))
        return decision.events

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state

    def succeed(self, node_id: str, index: int | None = None, output: Any = None) -> list[Event]:
        task = self.open.pop((node_id, index))
        self.feed(started(task))
        return self.feed(succeeded(task, output))

    def fail(self, node_id: str, index: int, retryable: bool = True) -> list[Event]:
        task = self.open.pop((node_id, index))
        self.feed(started(task))
        return self.feed(failed(task, f"item {index} broke", retryable))

    def open_items(self) -> list[int]:
        return sorted(i for (n, i) in self.open if n == "each" and i is not None)


def names(n: int) -> dict[str, Any]:
    return {"items": [{"name": f"n{i}"} for i in range(n)]}


def test_items_run_at_most_max_parallel_and_output_is_in_item_order() -> None:
    h = MapHarness(map_ir(max_parallel=3))
    h.succeed("fetch", output=names(10))
    started_ev = [e for e in h.log if isinstance(e, MapStarted)]
    assert started_ev[0].payload.items == 10
    assert h.open_items() == [0, 1, 2]
    task = h.open[("each", 1)]
    assert task.node_type == "transform" and task.item == {"name": "n1"} and task.index == 1
    assert task.config == {"output": "{{ item.name }}"}
    assert h.run.nodes["each"].status is NodeStatus.RUNNING
    # Finish them in a shuffled order: the output still follows the items' order.
    rng = random.Random(7)
    while h.open_items():
        index = rng.choice(h.open_items())
        h.succeed("each", index, f"out{index}")
        assert len(h.open_items()) <= 3
    assert h.running_max == 3
    assert h.run.nodes["each"].status is NodeStatus.SUCCEEDED
    assert h.run.nodes["each"].output == [f"out{i}" for i in range(10)]
    assert h.open[("after", None)].nodes["each"].output == [f"out{i}" for i in range(10)]
    done = h.succeed("after")
    assert isinstance(done[-1], RunCompleted)
    items = [
        e.payload.item for e in h.log if isinstance(e, NodeScheduled) and e.payload.item is not None
    ]
    assert items == list(range(10))


def test_fail_fast_fails_the_map_and_starts_nothing_new() -> None:
    h = MapHarness(map_ir(max_parallel=2))
    h.succeed("fetch", output=names(6))
    h.succeed("each", 0, "ok")
    decided = h.fail("each", 1, retryable=False)
    assert [type(e) for e in decided] == [NodeFailed, RunFailed]
    assert decided[0].payload.item is None and "item 1 failed" in decided[0].payload.error
    assert h.run.status is RunStatus.FAILED
    scheduled = [
        e.payload.item for e in h.log if isinstance(e, NodeScheduled) and e.payload.item is not None
    ]
    assert scheduled == [0, 1, 2]  # 2 replaced 0; nothing after 1 failed


def test_collect_runs_every_item_and_lists_results_and_errors() -> None:
    h = MapHarness(map_ir(max_parallel=2, failure="collect"))
    h.succeed("fetch", output=names(4))
    h.fail("each", 0, retryable=False)
    h.succeed("each", 1, "b")
    h.succeed("each", 2, "c")
    h.fail("each", 3, retryable=False)
    node = h.run.nodes["each"]
    assert node.status is NodeStatus.SUCCEEDED
    assert node.output == {
        "results": [None, "b", "c", None],
        "errors": [{"index": 0, "error": "item 0 broke"}, {"index": 3, "error": "item 3 broke"}],
    }
    assert ("after", None) in h.open


def test_each_item_has_its_own_retries() -> None:
    h = MapHarness(map_ir(max_parallel=2, max_attempts=3))
    h.succeed("fetch", output=names(2))
    h.fail("each", 0)
    assert h.open[("each", 0)].attempt == 2  # no backoff: retried at once
    h.fail("each", 0)
    h.succeed("each", 1, "b")
    assert h.open[("each", 0)].attempt == 3
    assert h.run.nodes["each"].items[1].attempt == 1
    h.succeed("each", 0, "a")
    assert h.run.nodes["each"].output == ["a", "b"]


def test_an_item_retry_waits_for_its_timer_and_holds_its_slot() -> None:
    h = MapHarness(map_ir(max_parallel=1, max_attempts=2, backoff_s=2))
    h.succeed("fetch", output=names(2))
    decided = h.fail("each", 0)
    assert [type(e) for e in decided] == [NodeRetryPlanned]
    assert decided[0].payload.item == 0
    assert h.open_items() == []  # item 1 waits: item 0 still holds the only slot
    timer = next(t for t in pending_timers(h.run, grace_s=5) if t.kind == "retry")
    assert timer.item == 0
    h.feed(timer_fired(h.run.run_id, h.run.tenant, timer, EPOCH))
    assert h.open[("each", 0)].attempt == 2


def test_an_item_that_gives_no_answer_times_out_as_a_node_does() -> None:
    h = MapHarness(map_ir(max_parallel=2, timeout_s=10, failure="collect"))
    h.succeed("fetch", output=names(1))
    task = h.open.pop(("each", 0))
    h.feed(started(task))
    timer = next(t for t in pending_timers(h.run, grace_s=5) if t.kind == "timeout")
    assert (timer.item, timer.timeout_s) == (0, 15)
    h.feed(timer_fired(h.run.run_id, h.run.tenant, timer, EPOCH))
    node = h.run.nodes["each"]
    assert node.status is NodeStatus.SUCCEEDED
    assert "timed out: item 0" in node.output["errors"][0]["error"]


@pytest.mark.parametrize(
    ("output", "over", "reason"),
    [
        ({"items": "nope"}, "nodes.fetch.output.items", "is a string, not a list"),
        ({"other": []}, "nodes.fetch.output.items", "has nothing at 'items'"),
        ({}, "input.items", "at most 10000"),  # only the run input holds that many inline
    ],
)
def test_a_list_that_cannot_be_read_fails_the_node_with_the_reason(
    output: Any, over: str, reason: str
) -> None:
    h = MapHarness(map_ir(over=over), run_input={"items": list(range(10_001))})
    h.succeed("fetch", output=output)
    assert h.run.status is RunStatus.FAILED
    assert reason in (h.run.nodes["each"].error or "")


def test_an_output_kept_only_in_the_cas_cannot_be_mapped_over() -> None:
    h = MapHarness(map_ir())
    big = {"items": ["x" * 100] * 200}  # over 16 KB: the worker reports it by reference
    h.succeed("fetch", output=big)
    assert h.run.status is RunStatus.FAILED
    assert "kept only in the CAS" in (h.run.nodes["each"].error or "")


def test_an_empty_list_succeeds_at_once() -> None:
    h = MapHarness(map_ir())
    h.succeed("fetch", output={"items": []})
    assert h.run.nodes["each"].output == []
    assert ("after", None) in h.open


def test_a_large_item_output_is_listed_by_reference() -> None:
    h = MapHarness(map_ir())
    h.succeed("fetch", output=names(2))
    h.succeed("each", 0, "x" * 20_000)
    h.succeed("each", 1, "small")
    output = h.run.nodes["each"].output
    assert output[0]["$ref"].startswith("cas://sha256:") and output[1] == "small"


def test_the_same_history_replayed_decides_the_same_ids() -> None:
    """A coordinator that crashed and replays the same events decides the very same events
    and tasks (same ids): consumers drop the copies."""

    def history(h: MapHarness) -> list[Event]:
        h.succeed("fetch", output=names(8))
        rng = random.Random(3)
        while h.open_items():
            index = rng.choice(h.open_items())
            if index % 3 == 0 and h.open[("each", index)].attempt == 1:
                h.fail("each", index)
            else:
                h.succeed("each", index, index)
        return h.log

    first = history(MapHarness(map_ir(max_attempts=2)))
    second = history(MapHarness(map_ir(max_attempts=2)))
    assert [e.event_id for e in first] == [e.event_id for e in second]
    ids = [e.event_id for e in first]
    assert len(ids) == len(set(ids))
    # After a crash, the coordinator steps the same records again from an older state: it
    # decides the same events under the same ids.
    h = MapHarness(map_ir(max_attempts=2))
    replayed: list[Event] = []
    for ev in first[1:]:
        if ev.actor.kind == "system" and ev.actor.id == "coordinator":
            continue  # the coordinator's own decisions: it makes them again
        replayed.extend(h.feed(ev))
    submitted = first[0].event_id  # what it decided on RunSubmitted, h decided already
    decided = [
        e.event_id for e in first if e.actor.id == "coordinator" and e.causation_id != submitted
    ]
    assert len(decided) >= 14  # the map, 8 items, 3 retries, its end, the next node
    assert [e.event_id for e in replayed] == decided


def test_a_fork_taken_halfway_reuses_the_finished_items() -> None:
    h = MapHarness(map_ir(max_parallel=3))
    h.succeed("fetch", output=names(6))
    h.succeed("each", 0, "a")
    h.succeed("each", 2, "c")  # items 0, 2 finished; 1, 3 and 4 in flight
    source = list(h.log)
    fork = MapHarness(map_ir(), first=run_forked("fork-1", source, len(source)))
    node = fork.run.nodes["each"]
    assert sorted(i for i, item in node.items.items() if item.terminal) == [0, 2]
    # The fork runs the others, never 0 or 2 again.
    assert fork.open_items() == [1, 3, 4]
    for index in (1, 3, 4, 5):
        if ("each", index) not in fork.open:
            continue
        fork.succeed("each", index, f"f{index}")
    while fork.open_items():
        fork.succeed("each", fork.open_items()[0], "late")
    scheduled = [
        e.payload.item
        for e in fork.log
        if isinstance(e, NodeScheduled) and e.payload.item is not None
    ]
    assert 0 not in scheduled and 2 not in scheduled
    output = fork.run.nodes["each"].output
    assert output[0] == "a" and output[2] == "c" and output[1] == "f1"
    finished = [e for e in fork.log if isinstance(e, NodeSucceeded) and e.payload.item is None]
    assert [e.payload.node_id for e in finished][-1] == "each"


def test_a_thousand_items_never_exceed_max_parallel() -> None:
    h = MapHarness(map_ir(max_parallel=20))
    h.succeed("fetch", output={"items": list(range(1000))})
    rng = random.Random(11)
    while h.open_items():
        h.succeed("each", rng.choice(h.open_items()), "ok")
        assert len(h.open_items()) <= 20
    assert h.running_max == 20
    assert h.run.nodes["each"].output == ["ok"] * 1000


def test_cancelling_a_run_mid_map_starts_no_more_items_and_ignores_late_answers() -> None:
    h = MapHarness(map_ir(max_parallel=2))
    h.succeed("fetch", output=names(5))
    h.feed(cancel_requested("run-1"))
    assert h.run.status is RunStatus.CANCELLED
    assert h.run.nodes["each"].status is NodeStatus.SKIPPED
    assert h.succeed("each", 0, "late") == []  # a finished run decides nothing
    scheduled = [e for e in h.log if isinstance(e, NodeScheduled) and e.payload.item is not None]
    assert len(scheduled) == 2


def test_an_items_start_that_comes_after_its_success_changes_nothing() -> None:
    # A worker sends an attempt's NodeStarted without waiting for it, and a start whose send
    # was retried can reach the log after the attempt's outcome. A finished item is left as
    # it is, as a finished node is: the map still counts it done with its output, and does
    # not finish with a null in its place.
    h = MapHarness(map_ir(max_parallel=2))
    h.succeed("fetch", output=names(2))
    late = h.open.pop(("each", 0))
    h.feed(succeeded(late, "out0"))
    assert h.run.nodes["each"].items[0].status is NodeStatus.SUCCEEDED
    h.feed(started(late))
    assert h.run.nodes["each"].items[0].status is NodeStatus.SUCCEEDED
    assert h.run.nodes["each"].items_done == 1
    h.succeed("each", 1, "out1")
    assert h.run.nodes["each"].status is NodeStatus.SUCCEEDED
    assert h.run.nodes["each"].output == ["out0", "out1"]
