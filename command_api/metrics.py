"""Prometheus metrics of the command API, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "aob_command_api_requests",
    "Requests answered",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "aob_command_api_request_seconds",
    "Time to answer a request",
    ["route", "method"],
    registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter(
    "aob_command_api_events_appended", "Events appended to the log", ["type"], registry=REGISTRY
)
