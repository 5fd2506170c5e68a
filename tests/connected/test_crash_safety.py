"""Crash safety of the live system: SIGKILL a service again and again while runs are in flight.

For each of the coordinator, the workers and the projector: 400 fresh runs of a 10-node
workflow (a fan-out of four, two joins of two, a join of the joins, two no-ops), and 10
SIGKILLs of that service, each followed by a restart. Then every run must be COMPLETED, each
of its nodes must have exactly one success in the read model, and the read model must hold
every event id of the log exactly once however often the log repeats it.

"Random moments" are moments while runs are in flight: after each recovery the test waits
until the log (for the projector: the projector's stored offsets) has advanced by a random
number of records, then kills. A kill with no run in flight fails the test loudly: it would
test nothing. The coordinator and the workers are on the runs' critical path (while one is
down nothing completes), so all 400 runs are submitted at once. The projector is not: the
runs would be done in seconds whatever happens to it, so in that phase the runs come in 10
waves of 40, one before each kill.

Recovery is measured from the kill until the service visibly works again: the coordinator
appends a record (producer timestamp after the kill), the workers report a node success, the
projector moves its stored offsets. Figures go to stdout as one JSON line per phase and to
the "figures" section of the terminal summary. ``AOB_CRASH_SEED`` replays a seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from infra.settings import Settings
from infra.stack import Stack
from infra.stack.process import (
    ServiceSpec,
    ensure_running,
    log_file,
    pid_alive,
)
from read_model.offsets import DEFAULT_PROJECTION
from schemas.topics import RUN_EVENTS
from tests.connected.live import pid_of, spec_of
from tests.connected.log_reading import LogCount, LogTail, count_log, dead_letters, end_offsets
from tests.helpers import eventually

pytestmark = [pytest.mark.connected, pytest.mark.timeout(900)]

# Enough for ten kills with runs in flight: a restarted coordinator handles its last batch
# again and catches up in a few hundred ms, so 200 runs were all done by the eighth kill.
RUNS = 400
KILLS = 10
SUBMIT_CONCURRENCY = 16
# Records of the run topic between a recovery and the next kill. A run appends 23 (its
# attempts are quick: each tells its start with its outcome), so a phase has about 9,200.
GATE_RECORDS = (60, 270)
RECOVER_TIMEOUT_S = 120.0
COMPLETE_TIMEOUT_S = 300.0
# One seed for the session's phases; each phase draws from its own stream of it.
SEED = int(os.environ.get("AOB_CRASH_SEED") or random.SystemRandom().randrange(2**32))

NODE_IDS = ("start", "a", "b", "c", "d", "ab", "cd", "merge", "tick", "done")


# Each attempt may take this long. A worker killed ten times in a row keeps an attempt
# unanswered for longer than the 60 s default; the coordinator would then time it out, and
# the redelivered first attempt and the retry would both succeed (at-least-once effects, as
# designed). Deadlines have tests of their own; this test is about crashes.
TIMEOUT_S = 900


def transform(node_id: str, **output: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "transform",
        "config": {"output": output},
        "timeout_s": TIMEOUT_S,
    }


EDGES = [
    ("start", "a"), ("start", "b"), ("start", "c"), ("start", "d"),
    ("a", "ab"), ("b", "ab"), ("c", "cd"), ("d", "cd"),
    ("ab", "merge"), ("cd", "merge"), ("merge", "tick"), ("tick", "done"),
]  # fmt: skip

# A fan-out of four, two joins of two, a join of the joins, then two no-ops in a row.
WORKFLOW = {
    "name": "crash-ten",
    "definition": {
        "nodes": [
            transform("start", n="{{ input.n }}"),
            transform("a", v="{{ nodes.start.output.n + 1 }}"),
            transform("b", v="{{ nodes.start.output.n * 2 }}"),
            transform("c", v="{{ nodes.start.output.n + 3 }}"),
            transform("d", v="{{ nodes.start.output.n * 4 }}"),
            transform("ab", s="{{ nodes.a.output.v + nodes.b.output.v }}"),
            transform("cd", s="{{ nodes.c.output.v + nodes.d.output.v }}"),
            transform("merge", total="{{ nodes.ab.output.s + nodes.cd.output.s }}"),
            {"id": "tick", "type": "noop", "timeout_s": TIMEOUT_S},
            {"id": "done", "type": "noop", "timeout_s": TIMEOUT_S},
        ],
        "edges": [{"from": src, "to": dst} for src, dst in EDGES],
    },
}


# The distinct events of one run: nothing decided twice under two ids, nothing missing. A
# node's start is in the log on its own (run.node_started) only when its attempt took long
# enough; else its outcome tells it (workers.start_report), so starts are counted apart.
RUN_EVENT_TYPES = {
    "run.submitted": 1,
    "run.started": 1,
    "run.node_scheduled": len(NODE_IDS),
    "run.node_succeeded": len(NODE_IDS),
    "run.completed": 1,
}


NO_STATE = re.compile(r"no state for run (\S+) at")  # the coordinator's warning
# The coordinator's warning when faust skipped records and it read them from the log.
UNDELIVERED = re.compile(r"records (\d+)\.\.(\d+) of \S+ were not delivered")


def merge_total(n: int) -> int:
    return (n + 1) + 2 * n + (n + 3) + 4 * n


# --- the system under test -----------------------------------------------------------------


def live_pid(settings: Settings, spec: ServiceSpec) -> int:
    pid = pid_of(settings, spec.name)
    assert pid is not None, f"{spec.name} is not running"
    return pid


def dead(pid: int) -> None:
    assert not pid_alive(pid), f"pid {pid} still alive"


def log_tail(settings: Settings, name: str, lines: int = 30) -> str:
    try:
        text = log_file(settings, name).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


async def projected(pg: asyncpg.Pool) -> int:
    """The sum of the projector's stored next offsets."""
    value = await pg.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM projection_offsets WHERE projection = $1",
        DEFAULT_PROJECTION,
    )
    return int(value)


class Submitter:
    def __init__(self, rest: httpx.AsyncClient, workflow_id: str, first_n: int) -> None:
        self._rest = rest
        self._workflow_id = workflow_id
        self._next_n = first_n
        self._slots = asyncio.Semaphore(SUBMIT_CONCURRENCY)
        self.runs: dict[str, int] = {}  # run id -> input n

    async def submit(self, count: int) -> None:
        ns = list(range(self._next_n, self._next_n + count))
        self._next_n += count
        await asyncio.gather(*(self._one(n) for n in ns))

    async def _one(self, n: int) -> None:
        async with self._slots:
            for _ in range(50):
                r = await self._rest.post(
                    "/v1/runs", json={"workflow_id": self._workflow_id, "input": {"n": n}}
                )
                if r.status_code == 429:
                    # Not a wait for a state: a client that honours Retry-After, as asked.
                    await asyncio.sleep(float(r.headers.get("retry-after", "0.5")))
                    continue
                assert r.status_code == 202, r.text
                self.runs[r.json()["run_id"]] = n
                return
            raise AssertionError("the command API kept refusing runs (429)")


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def restore(services: Settings) -> AsyncIterator[None]:
    """Whatever happens in the test, every service runs again afterwards."""
    yield
    await Stack(services).up()


@pytest.fixture
async def pg(services: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(services.postgres_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def kafka(services: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer client for offsets (no group, nothing assigned)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka_bootstrap)
    await consumer.start()
    yield consumer
    await consumer.stop()


@pytest.fixture
async def tail(services: Settings) -> AsyncIterator[LogTail]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=services.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    t = LogTail(consumer)
    yield t
    await t.close()
    await consumer.stop()


# --- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["coordinator", "workers", "projections"])
async def test_runs_complete_exactly_once_through_repeated_sigkills(
    service: str,
    services: Settings,
    bulk_api_key: str,
    restore: None,
    pg: asyncpg.Pool,
    kafka: AIOKafkaConsumer,
    tail: LogTail,
    figures: list[dict[str, Any]],
) -> None:
    rng = random.Random(f"{SEED}-{service}")
    print(f"\n[crash-safety {service}] seed {SEED} (AOB_CRASH_SEED={SEED} replays it)")
    spec = spec_of(services, service)
    started = time.monotonic()
    coordinator_log_from = log_size(services, "coordinator")
    tail.follow(await end_offsets(kafka))

    async def log_records() -> int:
        return sum((await end_offsets(kafka)).values())

    # What the kill gate counts: the log, or for the projector what it has stored.
    progress: Callable[[], Awaitable[int]] = (
        (lambda: projected(pg)) if service == "projections" else log_records
    )

    async def recovered(mark: int, killed_at: float) -> float:
        """Seconds from the kill until the restarted service visibly worked."""
        if service == "coordinator":
            at = tail.first_after(mark, killed_at, lambda s: s.actor == "coordinator")
            return at - killed_at
        if service == "workers":
            at = tail.first_after(mark, killed_at, lambda s: s.type == "run.node_succeeded")
            return at - killed_at
        # A batch transaction begun after the kill is the new projector's (``updated_at`` is
        # its start), not a commit of the dead one's that the server finished late.
        last = await pg.fetchval(
            "SELECT max(updated_at) FROM projection_offsets WHERE projection = $1",
            DEFAULT_PROJECTION,
        )
        assert last is not None and last.timestamp() > killed_at, "no offsets stored since"
        return time.time() - killed_at

    headers = {"Authorization": f"Bearer {bulk_api_key}"}
    async with httpx.AsyncClient(
        base_url=services.command_api_url, headers=headers, timeout=30
    ) as rest:
        published = await rest.post("/v1/workflows", json=WORKFLOW)
        assert published.status_code == 201, published.text
        submitter = Submitter(rest, published.json()["workflow_id"], first_n=1)
        waves = service == "projections"
        feeding = None if waves else asyncio.create_task(submitter.submit(RUNS))

        recover_s: list[float] = []
        in_flight_at_kill: list[int] = []
        try:
            base = await progress()
            for i in range(KILLS):
                if waves:
                    await submitter.submit(RUNS // KILLS)
                k = rng.randint(*GATE_RECORDS)

                async def advanced(base: int = base, k: int = k) -> None:
                    now = await progress()
                    assert now >= base + k, f"{service}: progress {now - base} of {k} records"

                await eventually(advanced, timeout=RECOVER_TIMEOUT_S, interval=0.02)
                if waves:  # the projector's work in flight: runs not yet completed in its tables
                    done = await pg.fetchval(
                        "SELECT count(*) FROM runs WHERE run_id = ANY($1::text[])"
                        " AND status = 'COMPLETED'",
                        list(submitter.runs),
                    )
                    in_flight = len(submitter.runs) - done
                else:
                    in_flight = len(set(submitter.runs) - tail.completed)
                assert in_flight > 0, (
                    f"kill {i + 1} of {service}: no run in flight any more, the kill would test "
                    f"nothing ({len(submitter.runs)} submitted); lower GATE_RECORDS"
                )
                in_flight_at_kill.append(in_flight)

                pid = live_pid(services, spec)
                mark = tail.mark()
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                await eventually(lambda pid=pid: dead(pid), timeout=10, interval=0.01)
                await ensure_running(services, spec)
                try:
                    took = await eventually(
                        lambda m=mark, t=killed_at: recovered(m, t),
                        timeout=RECOVER_TIMEOUT_S,
                        interval=0.05,
                    )
                except AssertionError as e:
                    raise AssertionError(
                        f"{service} did not recover after kill {i + 1}: {e}\n"
                        f"--- {service} log ---\n{log_tail(services, service)}"
                    ) from e
                recover_s.append(round(took, 3))
                print(
                    f"[crash-safety {service}] kill {i + 1}: after {k} records, "
                    f"{in_flight} runs in flight, recovered in {took:.2f}s"
                )
                base = await progress()
            if feeding is not None:
                await feeding
        finally:  # a failed phase leaves no submissions behind
            if feeding is not None and not feeding.done():
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)

    runs = submitter.runs
    assert len(runs) == RUNS

    # 1. Every run ends COMPLETED in the read model.
    await all_completed(services, pg, tail, runs, COMPLETE_TIMEOUT_S)

    seen = await exactly_once(services, pg, kafka, runs, {"coordinator": coordinator_log_from})
    log, distinct = seen.log, len(seen.log.ids)
    timers_fired, undelivered = seen.timers_fired, seen.undelivered

    row = {
        "test": "crash_safety",
        "phase": service,
        "seed": SEED,
        "runs": RUNS,
        "completed": RUNS,
        "kills": len(recover_s),
        "log_records": log.records,
        "distinct_events": distinct,
        "duplicates_dropped": log.records - distinct,
        "duplicates_by_type": dict(log.duplicates_by_type.most_common()),
        "timers_fired_and_ignored": timers_fired,
        "records_faust_skipped_read_from_log": undelivered,
        "recover_s_median": round(statistics.median(recover_s), 3),
        "recover_s_max": max(recover_s),
        "recover_s": recover_s,
        "in_flight_at_kill_min": min(in_flight_at_kill),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(row))
    figures.append(row)


async def all_completed(
    services: Settings, pg: asyncpg.Pool, tail: LogTail, runs: dict[str, int], timeout: float
) -> None:
    """Once every one of ``runs`` is COMPLETED in the read model; else what the read model
    and the log say of those that are not."""

    async def completed() -> None:
        rows = await pg.fetch(
            "SELECT run_id, status FROM runs WHERE run_id = ANY($1::text[])", list(runs)
        )
        by_status = Counter(r["status"] for r in rows)
        assert len(rows) == len(runs) and by_status["COMPLETED"] == len(runs), dict(by_status)

    try:
        await eventually(completed, timeout=timeout, interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{await stuck_runs(services, pg, tail, runs)}") from e


@dataclass
class ExactlyOnce:
    log: LogCount
    timers_fired: int  # wake-ups that came after the answer and changed nothing
    undelivered: int  # records faust skipped, which the coordinator read from the log


async def exactly_once(
    services: Settings,
    pg: asyncpg.Pool,
    kafka: AIOKafkaConsumer,
    runs: dict[str, int],
    coordinator_logs_from: dict[str, int],
) -> ExactlyOnce:
    """The checks of a phase once its ``runs`` (run id -> input n) are COMPLETED: log and
    read model agree, each node succeeded once, nothing was dead-lettered, and no coordinator
    (its log read from the offsets given) lost a run's state."""
    # 2. The projector has read the whole log as it is now; then log and read model agree.
    until = await end_offsets(kafka)

    async def caught_up() -> None:
        rows = await pg.fetch(
            "SELECT partition, next_offset FROM projection_offsets"
            " WHERE projection = $1 AND topic = $2",
            DEFAULT_PROJECTION,
            RUN_EVENTS,
        )
        stored = {r["partition"]: r["next_offset"] for r in rows}
        behind = {
            tp.partition: end for tp, end in until.items() if stored.get(tp.partition, 0) < end
        }
        assert not behind, f"projector behind on partitions {behind}"

    await eventually(caught_up, timeout=60)
    log = await count_log(services.kafka_bootstrap, until, set(runs))
    distinct = len(log.ids)
    parked = await dead_letters(services.kafka_bootstrap, set(runs))
    assert not parked, f"records of this phase's runs were dead-lettered: {parked[:5]}"
    # A coordinator that found no state for one of these runs lost (part of) its table.
    lines = []
    for name, start in coordinator_logs_from.items():
        with log_file(services, name).open("rb") as fh:
            fh.seek(start)
            lines += fh.read().decode(errors="replace").splitlines()
    stateless = [
        line for line in lines if (m := NO_STATE.search(line)) is not None and m[1] in runs
    ]
    assert not stateless, f"the coordinator lost the state of runs: {stateless[:5]}"
    undelivered = sum(
        int(m[2]) - int(m[1]) + 1 for line in lines if (m := UNDELIVERED.search(line)) is not None
    )

    # 3. Each node of each run succeeded exactly once: in the log (distinct success events)
    #    and in the read model (successes counts distinct NodeSucceeded events).
    twice_in_log = {key: sorted(ids) for key, ids in log.successes.items() if len(ids) != 1}
    assert not twice_in_log, f"nodes with more than one distinct success event: {twice_in_log}"
    assert len(log.successes) == len(runs) * len(NODE_IDS), len(log.successes)
    completions = {r: sorted(ids) for r, ids in log.completions.items() if len(ids) != 1}
    assert not completions and len(log.completions) == len(runs), completions
    shapes = {r: Counter(log.types[i] for i in ids) for r, ids in log.ids_by_run.items()}
    # Timer wake-ups are counted, not forbidden: one that lands after the answer must change
    # nothing (no failure, no retry), as the shapes below show.
    timers_fired = sum(c.pop("run.timer_fired", 0) for c in shapes.values())
    starts = {r: c.pop("run.node_started", 0) for r, c in shapes.items()}
    assert all(n <= len(NODE_IDS) for n in starts.values()), starts
    odd = {r: dict(c) for r, c in shapes.items() if c != RUN_EVENT_TYPES}
    assert not odd and len(shapes) == len(runs), f"runs with other distinct events: {odd}"

    nodes = await pg.fetch(
        "SELECT run_id, node_id, status, successes, attempts, output, started_at"
        " FROM node_executions"
        " WHERE run_id = ANY($1::text[])",
        list(runs),
    )
    assert len(nodes) == len(runs) * len(NODE_IDS), len(nodes)
    wrong = [dict(r) for r in nodes if r["successes"] != 1 or r["status"] != "SUCCEEDED"]
    assert not wrong, f"{len(wrong)} nodes without exactly one success: {wrong[:10]}"
    unstarted = [(r["run_id"], r["node_id"]) for r in nodes if r["started_at"] is None]
    assert not unstarted, f"{len(unstarted)} nodes whose start nothing told: {unstarted[:10]}"
    totals = {
        r["run_id"]: json.loads(r["output"])["total"] for r in nodes if r["node_id"] == "merge"
    }
    bad_totals = {
        r: (t, merge_total(runs[r])) for r, t in totals.items() if t != merge_total(runs[r])
    }
    assert not bad_totals, bad_totals

    # 4. No event id twice in the read model, none missing: the rows are the log's distinct ids.
    stored_ids = [
        r["event_id"]
        for r in await pg.fetch(
            "SELECT event_id FROM run_events WHERE run_id = ANY($1::text[])", list(runs)
        )
    ]
    assert len(stored_ids) == len(set(stored_ids)) == distinct, (len(stored_ids), distinct)
    assert set(stored_ids) == set(log.ids)
    counts = {
        r["run_id"]: r["event_count"]
        for r in await pg.fetch(
            "SELECT run_id, event_count FROM runs WHERE run_id = ANY($1::text[])", list(runs)
        )
    }
    off = {r: (counts[r], len(ids)) for r, ids in log.ids_by_run.items() if counts[r] != len(ids)}
    assert not off, f"runs.event_count differs from the log's distinct events: {off}"

    return ExactlyOnce(log, timers_fired, undelivered)


def log_size(settings: Settings, name: str) -> int:
    try:
        return log_file(settings, name).stat().st_size
    except OSError:
        return 0


def coordinator_lines(settings: Settings, run_id: str, last: int = 5) -> list[str]:
    try:
        text = log_file(settings, "coordinator").read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if run_id in line][-last:]


async def stuck_runs(
    settings: Settings, pg: asyncpg.Pool, tail: LogTail, runs: dict[str, int], show: int = 3
) -> str:
    """What the read model and the log say about runs that did not complete (evidence)."""
    rows = await pg.fetch(
        "SELECT run_id, status FROM runs WHERE run_id = ANY($1::text[]) AND status <> 'COMPLETED'",
        list(runs),
    )
    missing = set(runs) - {
        r["run_id"]
        for r in await pg.fetch(
            "SELECT run_id FROM runs WHERE run_id = ANY($1::text[])", list(runs)
        )
    }
    lines = [f"{len(rows)} runs not COMPLETED, {len(missing)} not in the read model at all"]
    for r in rows[:show]:
        nodes = await pg.fetch(
            "SELECT node_id, status, attempts, successes FROM node_executions"
            " WHERE run_id = $1 ORDER BY node_id",
            r["run_id"],
        )
        lines.append(
            f"run {r['run_id']} {r['status']}: "
            + ", ".join(
                f"{n['node_id']}={n['status']}/a{n['attempts']}/s{n['successes']}" for n in nodes
            )
        )
        lines.append(f"  log: {tail.history(r['run_id'])}")
        lines.extend(f"  coordinator: {line}" for line in coordinator_lines(settings, r["run_id"]))
    return "\n".join(lines)
