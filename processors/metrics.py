"""Prometheus metrics of the coordinator (served by ``infra.metrics``), fed by its loop's
stats (``processors.stats``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

RECORDS = Counter("aob_coordinator_records", "Records of the run topic handled", registry=REGISTRY)
DECISIONS = Counter(
    "aob_coordinator_records_sent", "Events and tasks decided and sent", registry=REGISTRY
)
STEP_SECONDS = Histogram(
    "aob_coordinator_step_seconds",
    "Time to decide on one record (decode, load, step)",
    registry=REGISTRY,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
BATCH_RECORDS = Histogram(
    "aob_coordinator_batch_records",
    "Records per batch",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
BATCH_SECONDS = Histogram(
    "aob_coordinator_batch_seconds",
    "Time of one batch, from its first step to its stored states (the broker's acks included)",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
