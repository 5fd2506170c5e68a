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
