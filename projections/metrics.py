"""Prometheus metrics of the projector (served by ``infra.metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

RECORDS = Counter(
    "aob_projections_records", "Records read from the log", ["projection"], registry=REGISTRY
)
EVENTS = Counter(
    "aob_projections_events_applied",
    "Events applied to the read models (duplicates not counted)",
    ["projection"],
    registry=REGISTRY,
)
PARKED = Counter(
    "aob_projections_records_parked",
    "Records set aside in projection_poison (undecodable, or refused by PostgreSQL)",
    ["projection"],
    registry=REGISTRY,
)
BATCH_RECORDS = Histogram(
    "aob_projections_batch_records",
    "Records per batch (one transaction)",
    ["projection"],
    registry=REGISTRY,
    buckets=(1, 5, 10, 50, 100, 500, 1000, 5000),
)
BATCH_SECONDS = Histogram(
    "aob_projections_batch_seconds",
    "Time to apply one batch, commit included",
    ["projection"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge(
    "aob_projections_consumer_lag",
    "Records of a partition not yet applied (log end minus the next offset to read)",
    ["projection", "topic", "partition"],
    registry=REGISTRY,
)
