"""Errors of the worker runtime and its handlers.

    WorkerError
    ├── NodeError            the node cannot succeed as configured: reported as NodeFailed
    │   ├── ConfigError      config missing or of the wrong shape (never retryable)
    │   └── OutputRefused    the output breaks the value rules or the size limit (never
    │                        retryable; ``workers.outputs``)
    ├── InfrastructureFault  Kafka or the CAS misbehaved: retried, the offset stays uncommitted
    └── TaskCrashed          the worker itself failed on a task (a bug): its node was reported
                             failed if that could be done; the record is dead-lettered

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


class OutputRefused(NodeError):
    """The same output breaks the same rule on every attempt: never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class InfrastructureFault(WorkerError):
    pass


class TaskCrashed(WorkerError):
    """The worker failed on task ``task_id`` (``workers.execute``): ``reason`` says how, and
    ``reported`` whether its node was reported failed (else the run learns nothing until the
    attempt's deadline). Chained from the exception itself."""

    def __init__(self, task_id: str, reason: str, *, reported: bool) -> None:
        self.task_id = task_id
        self.reason = reason
        self.reported = reported
        super().__init__(reason)
