"""aob bench against the running stack: every figure it prints is read off real runs."""

from __future__ import annotations

import pytest

from cli.bench_commands import Plan, _bench
from cli.bench_shapes import load_shape
from infra.settings import Settings

pytestmark = pytest.mark.connected


async def test_a_burst_reports_throughput_latency_lag_and_cpu(services: Settings) -> None:
    out = await _bench(services, Plan(load_shape("fanout10"), runs=6, concurrency=3, timeout=120))
    assert (out["mode"], out["runs_completed"], out["runs_unfinished"]) == ("burst", 6, 0)
    assert out["node_executions_per_s"] > 0
    assert out["run_latency_ms"]["samples"] == 6
    # Per run, three successes cause decisions: 'first' (8 scheduled), the last of the eight
    # to succeed ('last' scheduled) and 'last' (completed); the other seven cause none.
    assert out["coordinator_step_latency_ms"]["samples"] == 6 * 3
    # The local stack runs PostgreSQL with track_commit_timestamp, so every event of the runs
    # has its lag: submitted, started, 10 x (scheduled, succeeded), completed, and a
    # run.node_started for each attempt that took longer than the workers' 100 ms
    # (workers.start_report: a quicker one tells its start with its outcome).
    assert 6 * 23 <= out["projection_lag_ms"]["samples"] <= 6 * 33
    assert out["projection_lag_ms"]["p50"] > 0
    cpu = out["cpu"]
    assert {"kafka", "postgres", "coordinator", "workers", "projections"} <= set(
        cpu["components_s"]
    )
    assert cpu["per_node_execution_ms"] > 0


async def test_serial_runs_one_at_a_time(services: Settings) -> None:
    out = await _bench(services, Plan(load_shape("chain3"), runs=3, timeout=120, serial=True))
    assert (out["mode"], out["runs_completed"], out["submit_concurrency"]) == ("serial", 3, 1)
    latency = out["run_latency_ms"]
    assert latency["samples"] == 3
    assert 0 < latency["p50"] <= latency["p99"]
