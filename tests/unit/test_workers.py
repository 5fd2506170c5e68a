"""Worker pieces that need no servers: handlers, reports, failure classification, offsets."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import reports
from schemas.codec import encode_event
from schemas.envelope import deterministic_id
from schemas.events import INLINE_OUTPUT_MAX_BYTES
from schemas.tasks import NodeTask
from templating import TemplateError
from workers.errors import ConfigError, NodeError
from workers.handlers import HANDLERS, Job
from workers.offsets import OffsetTracker, PartitionOffsets
from workers.outcome import classify
from workers.runtime import handler_types


def _task(node_type: str = "transform", config: dict[str, Any] | None = None) -> NodeTask:
    return NodeTask(
        task_id="task-1",
        run_id="run-1",
        tenant="acme",
        node_id="shape",
        node_type=node_type,
        attempt=2,
        config=config or {},
        input={"items": [1, 2], "who": "Ada"},
    )


def _job(task: NodeTask, nodes: dict[str, Any] | None = None) -> Job:
    return Job(task, {"input": task.input, "nodes": nodes or {}})


# --- handlers --------------------------------------------------------------------------


async def test_noop() -> None:
    assert await HANDLERS["noop"](_job(_task("noop"))) == {}


async def test_transform_renders_config_output() -> None:
    task = _task(config={"output": {"n": "{{ input.items | length }}", "hi": "Hi {{ input.who }}"}})
    assert await HANDLERS["transform"](_job(task)) == {"n": 2, "hi": "Hi Ada"}


async def test_transform_sees_upstream_outputs() -> None:
    task = _task(config={"output": "{{ nodes.up.output.x * 2 }}"})
    nodes = {"up": {"output": {"x": 21}, "status": "SUCCEEDED"}}
    assert await HANDLERS["transform"](_job(task, nodes)) == 42


async def test_transform_without_output_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        await HANDLERS["transform"](_job(_task(config={})))


async def test_transform_template_error() -> None:
    with pytest.raises(TemplateError, match="no attribute 'nope'"):
        await HANDLERS["transform"](_job(_task(config={"output": "{{ input.nope }}"})))


@pytest.mark.parametrize(
    ("expr", "result"),
    [("input.items | length > 1", True), ("input.who == 'Bob'", False), ("input.items", True)],
)
async def test_condition(expr: str, result: bool) -> None:
    assert await HANDLERS["condition"](_job(_task("condition", {"expr": expr}))) == {
        "result": result
    }


@pytest.mark.parametrize("config", [{}, {"expr": ""}, {"expr": 3}])
async def test_condition_needs_an_expression(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        await HANDLERS["condition"](_job(_task("condition", config)))


def test_handler_types() -> None:
    assert handler_types(HANDLERS, None) == sorted(HANDLERS)
    assert handler_types(HANDLERS, "noop, transform") == ["noop", "transform"]
    with pytest.raises(ValueError, match="no handler for teleport"):
        handler_types(HANDLERS, "noop,teleport")


# --- reports ---------------------------------------------------------------------------


def test_reports_have_deterministic_ids_and_the_envelope() -> None:
    task = _task()
    ev = reports.started(task, "host:1")
    assert (
        ev.event_id == deterministic_id("task-1", "started") == reports.started(task, "x").event_id
    )
    assert (ev.aggregate_id, ev.correlation_id, ev.causation_id) == ("run-1", "run-1", "task-1")
    assert ev.actor.id == "worker:transform" and ev.actor.tenant == "acme"
    assert ev.payload.attempt == 2
    ok = reports.succeeded(task, {"a": 1}, None, 7)
    assert ok.event_id == deterministic_id("task-1", "succeeded")
    assert ok.payload.output_inline and ok.payload.output == {"a": 1}
    assert ok.payload.output_ref is None  # a small output is only in the event
    bad = reports.failed(task, reports.node_reason(task, "boom"), retryable=False)
    assert bad.event_id == deterministic_id("task-1", "failed")
    assert "'shape'" in bad.payload.error and not bad.payload.retryable


def test_an_output_not_inline_must_have_its_reference() -> None:
    with pytest.raises(ValueError, match="needs its output_ref"):
        reports.succeeded(_task(), "x", None, INLINE_OUTPUT_MAX_BYTES + 1)


def test_large_outputs_travel_by_reference_only() -> None:
    ref = "cas://sha256:" + "0" * 64
    big = reports.succeeded(_task(), "x", ref, INLINE_OUTPUT_MAX_BYTES + 1)
    assert not big.payload.output_inline and big.payload.output is None
    assert big.payload.output_ref == ref


def test_long_reasons_are_cut() -> None:
    ev = reports.failed(_task(), "x" * 100_000, retryable=True)
    assert len(ev.payload.error) == reports.MAX_ERROR_CHARS


def test_a_reason_quoting_a_nul_or_a_lone_surrogate_can_still_be_sent() -> None:
    ev = reports.failed(_task(), "got \x00 and \ud800 from there", retryable=False)
    assert ev.payload.error == "got \ufffd and \ufffd from there"
    encode_event(ev)  # raised for the surrogate before


@pytest.mark.parametrize(
    ("exc", "retryable", "words"),
    [
        (TimeoutError(), True, "timed out after 5s"),
        (TemplateError("{{ x }}", "'x' is undefined"), False, "template error"),
        (ConfigError("needs expr"), False, "needs expr"),
        (NodeError("503 from upstream", retryable=True), True, "503"),
        (KeyError("k"), True, "unexpected KeyError"),
    ],
)
def test_classify(exc: BaseException, retryable: bool, words: str) -> None:
    what, retry = classify(exc, 5.0)
    assert retry is retryable and words in what


# --- offsets ---------------------------------------------------------------------------


def test_commits_stop_at_the_lowest_unfinished_offset() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.started("p0", o)
    t.finished("p0", 11)
    t.finished("p0", 12)
    assert t.to_commit() == {"p0": 10}  # 10 still runs: nothing past it
    t.committed({"p0": 10})
    assert t.to_commit() == {}
    t.finished("p0", 10)
    assert t.to_commit() == {"p0": 13}
    t.committed({"p0": 13})
    assert t.to_commit() == {}


def test_partitions_are_independent_and_forgotten() -> None:
    t = OffsetTracker()
    t.started("p0", 0)
    t.started("p1", 5)
    t.finished("p1", 5)
    assert t.to_commit() == {"p0": 0, "p1": 6}
    t.forget("p1")
    assert t.to_commit() == {"p0": 0}
    assert t.in_flight("p0") == 1


@given(st.integers(min_value=1, max_value=60), st.randoms())
def test_committed_offset_never_passes_an_unfinished_task(n: int, rnd: random.Random) -> None:
    part = PartitionOffsets()
    for o in range(n):
        part.started(o)
    order = list(range(n))
    rnd.shuffle(order)
    done: set[int] = set()
    last = -1
    for o in order:
        part.finished(o)
        done.add(o)
        offset = part.committable()
        if offset is not None:
            assert offset > last
            assert all(x in done for x in range(offset))  # everything before it is finished
            part.committed = last = offset
    assert last == n
