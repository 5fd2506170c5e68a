"""Prometheus metrics of the workers (served by ``infra.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

IN_FLIGHT = Gauge(
    "aob_workers_tasks_in_flight", "Tasks being handled now", ["node_type"], registry=REGISTRY
)
TASKS = Counter(
    "aob_workers_tasks",
    "Tasks handled, by how they ended (succeeded, failed, waiting, dead_lettered, skipped)",
    ["node_type", "outcome"],
    registry=REGISTRY,
)
TASK_SECONDS = Histogram(
    "aob_workers_task_seconds",
    "Time from taking a task to its acknowledged report",
    ["node_type"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# Fair execution (workers.fair).
TASKS_WAITING = Gauge(
    "aob_workers_tasks_waiting",
    "Tasks taken from Kafka and waiting to start in this process, by what they wait for "
    "(worker_slots, tenant_slots, concurrency_key, rate_limit)",
    ["node_type", "waiting_for"],
    registry=REGISTRY,
)
SLOTS_IN_USE = Gauge(
    "aob_workers_slots_in_use",
    "Slots of the process's pool in use, by node type",
    ["node_type"],
    registry=REGISTRY,
)
SLOTS = Gauge("aob_workers_slots", "Slots of the process's pool", registry=REGISTRY)
FETCH_PAUSED = Gauge(
    "aob_workers_fetch_paused",
    "1 while the consumer of a node type has stopped fetching because the waiting set is "
    "past its bound (AOB_WORKERS_MAX_WAITING, AOB_WORKERS_MAX_WAITING_BYTES)",
    ["node_type"],
    registry=REGISTRY,
)
TASKS_QUEUED = Counter(
    "aob_workers_tasks_queued",
    "Tasks held back for a limit (each attempt counted once per kind of limit)",
    ["node_type", "waiting_for"],
    registry=REGISTRY,
)
LIMIT_FAULTS = Counter(
    "aob_workers_limit_faults",
    "Round trips to the limits store (PostgreSQL) that failed, by what they were for "
    "(limits, lease, renew, release, rate); the tasks concerned wait and try again",
    ["what"],
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "aob_workers_leases_lost",
    "Concurrency key leases found taken over at renewal (their attempt ran on without one)",
    registry=REGISTRY,
)
UNDEFINED_RATE_LIMITS = Counter(
    "aob_workers_undefined_rate_limits",
    "Attempts of nodes naming a rate limit that their tenant does not define (not limited)",
    ["node_type"],
    registry=REGISTRY,
)
