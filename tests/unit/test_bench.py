"""aob bench's pure parts: its shapes, its arithmetic, its pacing, and the CPU and memory it
reads from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.progress import Progress

from cli import CLIError
from cli.bench_commands import (
    Plan,
    Readings,
    _submit_burst,
    bench,
    bench_limits,
    result_of,
    submissions_of,
)
from cli.bench_readings import (
    percentile,
    step_latencies_ms,
    summary,
    tree_cpu_seconds,
    tree_resident_mb,
)
from cli.bench_shapes import BUILT_IN, load_shape
from limits.admission import MAX_PER_MINUTE, unthrottled
from schemas.compiler import compile_workflow
from schemas.workflow import WorkflowDefinition
from workers.runtime import DEFAULT_CONCURRENCY

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("name", "nodes", "edges"), [("chain3", 3, 2), ("fanout10", 10, 16)])
def test_built_in_shapes_are_publishable_no_op_dags(name: str, nodes: int, edges: int) -> None:
    shape = load_shape(name)
    ir = compile_workflow(WorkflowDefinition.model_validate(shape.definition))
    assert shape.nodes_per_run == nodes == len(ir.nodes)
    assert len(shape.definition["edges"]) == edges
    assert {n["type"] for n in shape.definition["nodes"]} == {"noop"}
    assert set(BUILT_IN) == {"chain3", "fanout10"}


def test_a_shape_file_is_a_publishable_workflow_file(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "fan_out_fan_in.json"
    shape = load_shape(str(example))
    assert (shape.name, shape.nodes_per_run) == ("fan-out-fan-in", 6)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": []}))
    with pytest.raises(CLIError, match="expected"):
        load_shape(str(bad))
    with pytest.raises(CLIError, match="neither a built-in shape"):
        load_shape(str(tmp_path / "missing.json"))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None
    assert summary([2.0, 4.0]) == {"p50": 2.0, "p99": 4.0, "mean": 3.0, "samples": 2}


def test_step_latency_runs_from_a_success_to_its_first_decision() -> None:
    def ev(event_id: str, kind: str, ms: int, cause: str | None = None) -> dict[str, object]:
        at = T0 + timedelta(milliseconds=ms)
        return {"event_id": event_id, "type": kind, "occurred_at": at, "causation_id": cause}

    events = [
        ev("s1", "run.node_succeeded", 0),
        ev("n1", "run.node_started", 1, "s1"),  # a worker's report: not a decision
        ev("d2", "run.node_scheduled", 9, "s1"),
        ev("d1", "run.node_scheduled", 7, "s1"),
        ev("s2", "run.node_succeeded", 20),
        ev("c", "run.completed", 32, "s2"),
    ]
    assert sorted(step_latencies_ms(events)) == [7.0, 12.0]


def test_cpu_of_a_process_tree_counts_its_children() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    child = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])\n"
    parent = subprocess.Popen([sys.executable, "-c", child + "import time\ntime.sleep(30)\n"])
    try:
        before = tree_cpu_seconds({"tree": parent.pid, "me": os.getpid()})
        for _ in range(200):  # until the grandchild has burnt its 0.3 s and been reaped
            after = tree_cpu_seconds({"tree": parent.pid})
            if after["tree"] >= 0.3:
                break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.05)"], check=True)
        assert after["tree"] >= 0.3
        assert before["me"] > 0
        assert tree_cpu_seconds({"gone": 2**22 + 12345}) == {"gone": 0.0}
    finally:
        parent.kill()
        parent.wait()


def test_the_result_sums_what_was_measured() -> None:
    shape = load_shape("chain3")
    rows = [
        {"status": "COMPLETED", "created_at": T0, "finished_at": T0 + timedelta(seconds=1)},
        {
            "status": "COMPLETED",
            "created_at": T0 + timedelta(seconds=1),
            "finished_at": T0 + timedelta(seconds=2),
        },
        {"status": "RUNNING", "created_at": T0, "finished_at": None},
    ]
    readings = Readings(
        rows=rows,
        steps=[1.0, 3.0],
        lags="off",
        cpu={"kafka": 0.3, "coordinator": 0.3},
        submit_s=0.5,
        wall_s=9.0,
        limits="raised for the bench tenant bench-1234",
        memory_before={"coordinator": 80.0},
        memory_after={"coordinator": 96.5},
    )
    out = result_of(Plan(shape, runs=3, concurrency=4), readings)
    assert out["mode"] == "burst" and out["rate_per_s"] is None
    assert out["resident_memory_mb"]["after"] == {"coordinator": 96.5}
    assert out["resident_memory_mb"]["before"] == {"coordinator": 80.0}
    assert out["runs_completed"] == 2
    assert out["runs_unfinished"] == 1
    assert out["end_to_end_s"] == 2.0
    assert out["node_executions_per_s"] == 3.0  # 2 runs x 3 nodes in 2 s
    assert out["run_latency_ms"]["p50"] == 1000.0
    assert out["cpu"]["per_node_execution_ms"] == 100.0  # 0.6 s over 6 node executions
    assert out["projection_lag_ms"] == {"unavailable": "off"}
    assert out["command_api_requests_per_s"] == 6.0
    assert out["limits"] == "raised for the bench tenant bench-1234"


def test_submit_only_says_how_fast_the_command_api_took_the_burst() -> None:
    plan = Plan(load_shape("chain3"), runs=3000, concurrency=64, submit_only=True)
    assert plan.mode == "submit-only"
    out = submissions_of(plan, {"command_api": 1.5, "postgres": 0.6}, 2.0)
    assert out["mode"] == "submit-only"
    assert out["command_api_requests_per_s"] == 1500.0
    assert out["submit_concurrency"] == 64
    assert out["cpu"] == {
        "stack_s": 2.1,
        "per_submission_ms": 0.7,
        "components_s": {"command_api": 1.5, "postgres": 0.6},
    }
    assert "runs_completed" not in out  # it waits for no run


@pytest.mark.parametrize("other", [{"serial": True}, {"rate": 10.0}])
def test_submit_only_is_a_burst(other: dict[str, Any]) -> None:
    with pytest.raises(typer.BadParameter, match="submit-only"):
        bench(
            runs=1,
            shape="chain3",
            serial=other.get("serial", False),
            rate=other.get("rate"),
            submit_only=True,
            concurrency=1,
            timeout=1.0,
            as_json=True,
        )


def test_the_bench_tenants_limits_do_not_throttle_it() -> None:
    limits = bench_limits()
    assert limits.admission == unthrottled()
    assert limits.admission.submissions_per_minute == MAX_PER_MINUTE
    assert {t.per_minute for t in limits.admission.tiers} == {MAX_PER_MINUTE}
    # Nor do its slots per worker process: every node type may use all of a process's.
    assert all(
        (limits.execution.concurrency_of(t) or 0) >= DEFAULT_CONCURRENCY
        for t in ("http", "noop", "transform", "agent")
    )


def test_the_memory_of_a_process_tree_counts_its_children() -> None:
    hold = (  # 64 MB, every page touched, then held
        "b = bytearray(64 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
        "import time\ntime.sleep(30)\n"
    )
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {hold!r}])",
        ]
    )
    try:
        for _ in range(200):  # until the child has touched its 64 MB
            mb = tree_resident_mb({"tree": parent.pid})["tree"]
            if mb >= 64:
                break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.05)"], check=True)
        assert mb >= 64
        assert tree_resident_mb({"gone": 2**22 + 12345}) == {"gone": 0.0}
    finally:
        parent.kill()
        parent.wait()


class Api:
    """Answers every submission at once, noting when it came."""

    def __init__(self) -> None:
        self.at: list[float] = []

    async def submit(self, body: dict[str, Any]) -> str:
        self.at.append(asyncio.get_running_loop().time())
        return f"r{body['input']['i']}"


async def test_a_paced_bench_spaces_its_submissions_evenly() -> None:
    api = Api()
    plan = Plan(load_shape("chain3"), runs=6, concurrency=16, rate=40.0)
    assert plan.mode == "paced"
    with Progress(disable=True) as progress:
        run_ids = await _submit_burst(api, plan, progress)  # type: ignore[arg-type]
    assert sorted(run_ids) == [f"r{i}" for i in range(6)]
    first = api.at[0]
    for i, at in enumerate(api.at):  # in order, none before its moment (1 ms of timer slack)
        assert at >= first + i / 40.0 - 0.001
    assert api.at[-1] - first >= 5 / 40.0 - 0.001

    burst = Api()
    with Progress(disable=True) as progress:
        await _submit_burst(burst, Plan(load_shape("chain3"), runs=6), progress)  # type: ignore[arg-type]
    assert burst.at[-1] - burst.at[0] < 5 / 40.0, "a burst is not paced"
