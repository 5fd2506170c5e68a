"""What ``aob bench`` reads off the machine and the read model once the runs are done.

- **CPU**: user + system time of every process of the stack (each component's process and
  all its descendants, from ``/proc``), sampled before the first submission and after the last
  run finished; divided by the node executions, it is the engine's cost per node, summed over
  every process (the figure the Temporal peer harness reports as server + worker CPU).
- **Memory**: the resident memory of each component (its process and all its descendants,
  from ``/proc``), before the first submission and once the stack settled after the last
  run finished (the coordinator gives freed memory back after a quiet spell).
- **Run latency**: ``finished_at - created_at`` of each run, both stamped by their writers
  (the command API's ``run.submitted``, the coordinator's ``run.completed``).
- **Coordinator step latency**: from each worker's ``run.node_succeeded`` to the first
  decision it caused (both writers' clocks).
- **Projection lag**: from an event's ``occurred_at`` to the commit of the transaction that
  projected it, read from PostgreSQL's commit timestamps (``track_commit_timestamp``, which
  the local stack turns on; on a server without it, the lag is reported as unavailable).
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from run_model import RUN_FINISHED

_PROC = Path("/proc")


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "mean": round(statistics.fmean(values), 2) if values else None,
        "samples": len(values),
    }


# -- CPU ------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children, resident MB), or
    None if gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    fields = text[text.rindex(")") + 2 :].split()
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    resident_mb = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # rss, in pages
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"), resident_mb


def tree_cpu_seconds(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named root process and all its descendants."""
    return _tree_sums(roots, 1)


def tree_resident_mb(roots: Mapping[str, int]) -> dict[str, float]:
    """Resident memory now, in MB, of each named root process and all its descendants."""
    return {name: round(mb, 1) for name, mb in _tree_sums(roots, 2).items()}


def _tree_sums(roots: Mapping[str, int], field: int) -> dict[str, float]:
    """The sum of ``_stat``'s ``field`` over each named root process and its descendants."""
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, *_) in stats.items():
        children[ppid].append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        total, todo, seen = 0.0, [root], set()
        while todo:
            pid = todo.pop()
            if pid in seen or pid not in stats:
                continue
            seen.add(pid)
            total += stats[pid][field]
            todo.extend(children.get(pid, ()))
        out[name] = total
    return out


def cpu_used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


# -- the read model ---------------------------------------------------------------------------


async def finished_count(conn: asyncpg.Connection, tenant: str) -> int:
    """How many runs of ``tenant`` (the bench's own, made for it) have finished. Asked every
    0.1 s while a burst runs, by the tenant and its status (an index has both): by run id, a
    thousand index probes a time cost PostgreSQL 5 ms of the CPU the stack was measured on."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM runs WHERE tenant = $1 AND status = ANY($2)",
            tenant,
            [str(status) for status in RUN_FINISHED],
        )
    )


async def run_status(conn: asyncpg.Connection, run_id: str) -> str | None:
    status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
    return None if status is None else str(status)


async def runs_of(conn: asyncpg.Connection, run_ids: list[str]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT run_id, status, created_at, finished_at FROM runs WHERE run_id = ANY($1)",
            run_ids,
        )
    )


def run_latencies_ms(runs: Iterable[Mapping[str, Any]]) -> list[float]:
    return [
        (r["finished_at"] - r["created_at"]).total_seconds() * 1000
        for r in runs
        if r["status"] == "COMPLETED" and r["finished_at"] is not None
    ]


def step_latencies_ms(events: list[Mapping[str, Any]]) -> list[float]:
    """ms from each NodeSucceeded to the first decision it caused, in one run's events."""
    at: dict[str, datetime] = {e["event_id"]: e["occurred_at"] for e in events}
    kinds = {e["event_id"]: e["type"] for e in events}
    first_effect: dict[str, datetime] = {}
    for e in events:
        cause = e["causation_id"]
        if (
            cause in kinds
            and kinds[cause] == "run.node_succeeded"
            and e["type"] != "run.node_started"
        ):
            t = e["occurred_at"]
            first_effect[cause] = min(first_effect.get(cause, t), t)
    return [(t - at[c]).total_seconds() * 1000 for c, t in first_effect.items()]


async def step_latencies(conn: asyncpg.Connection, run_ids: list[str]) -> list[float]:
    rows = await conn.fetch(
        "SELECT run_id, event_id, type, causation_id, occurred_at FROM run_events"
        " WHERE run_id = ANY($1) ORDER BY run_id, seq",
        run_ids,
    )
    by_run: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_run[row["run_id"]].append(row)
    return [ms for events in by_run.values() for ms in step_latencies_ms(events)]


async def projection_lags(conn: asyncpg.Connection, run_ids: list[str]) -> list[float] | str:
    """ms from each event to the commit that projected it, or why that cannot be read."""
    if await conn.fetchval("SHOW track_commit_timestamp") != "on":
        return "PostgreSQL's track_commit_timestamp is off (the local stack turns it on)"
    rows = await conn.fetch(
        "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - occurred_at) * 1000 AS ms"
        " FROM run_events WHERE run_id = ANY($1)",
        run_ids,
    )
    # Rows written before the setting was on have no commit timestamp.
    return [float(r["ms"]) for r in rows if r["ms"] is not None]
