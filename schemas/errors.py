"""Errors of the wire contract.

SchemaError
├── InvalidWorkflow      a definition that cannot be published or run (reasons listed)
├── UnknownEventType     a wire name no registered event carries
├── DuplicateEventType   two classes claim one wire name (a bug, raised at import)
└── PoisonRecord         bytes on a topic that are not a valid event or task
"""

from __future__ import annotations


class SchemaError(Exception):
    """Root of every error raised by ``schemas``."""


class InvalidWorkflow(SchemaError):
    """A workflow definition failed validation. ``reasons`` says what to fix, one per line."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class UnknownEventType(SchemaError):
    def __init__(self, wire_name: str) -> None:
        self.wire_name = wire_name
        super().__init__(f"unknown event type {wire_name!r}")


class DuplicateEventType(SchemaError):
    pass


class PoisonRecord(SchemaError):
    """A record that can never be decoded. ``reason`` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
