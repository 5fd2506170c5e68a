"""Prometheus text from the processes that serve no HTTP of their own.

The command API answers ``/metrics`` on its own port. The coordinator, the workers and the
projector each serve theirs on a port of their own (``AOB_<SERVICE>_METRICS_PORT``; 0
turns it off), on the stack's host, from a small thread of prometheus-client's: it answers
while the service's event loop is busy, which is when the figures matter most. ``aob
status`` lists each component's metrics URL.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

from infra.settings import Settings

log = logging.getLogger(__name__)

# The services with a metrics port of their own, and the setting that holds it.
PORT_SETTINGS = {
    "coordinator": "coordinator_metrics_port",
    "workers": "workers_metrics_port",
    "projections": "projections_metrics_port",
}


def metrics_url(settings: Settings, service: str) -> str | None:
    """Where ``service`` serves its metrics (None: it serves none, or the port is 0)."""
    if service == "command_api":
        return f"{settings.command_api_url}/metrics"
    setting = PORT_SETTINGS.get(service)
    port = getattr(settings, setting) if setting else 0
    return f"http://{settings.host}:{port}/metrics" if port else None


def serve_metrics(settings: Settings, service: str, registry: CollectorRegistry) -> None:
    """Serve ``registry`` on ``service``'s metrics port (nothing if it is 0)."""
    port = getattr(settings, PORT_SETTINGS[service])
    if not port:
        return
    try:
        start_http_server(port, addr=settings.host, registry=registry)
    except OSError as e:
        # A second instance on one machine (a test's own coordinator, say) finds the port
        # taken: it runs without metrics rather than not at all.
        log.warning("metrics not served on %s:%d (%s)", settings.host, port, e)
        return
    log.info("metrics at http://%s:%d/metrics", settings.host, port)
