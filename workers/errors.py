"""Errors of the worker runtime and its handlers.

    WorkerError
    ├── NodeError            the node cannot succeed as configured: reported as NodeFailed
    │   └── ConfigError      config missing or of the wrong shape (never retryable)
    └── InfrastructureFault  Kafka or the CAS misbehaved: retried, the offset stays uncommitted

A handler raises ``NodeError`` (or ``templating.TemplateError``) for business failures and
sets ``retryable`` when another attempt could help (an HTTP 503, say). Any other exception
from a handler is reported as a retryable NodeFailed: the coordinator's retry policy bounds
it, whereas retrying a bug forever here would stall the partition.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error raised by ``workers``."""


class NodeError(WorkerError):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class ConfigError(NodeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class InfrastructureFault(WorkerError):
    pass
