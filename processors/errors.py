"""Errors of the coordinator.

    CoordinatorError
    ├── StateCorrupt     a stored run state that no longer loads (a bug, or a foreign writer)
    ├── StateUnstorable  a run state that cannot be written (values nested too deep)
    ├── Unsendable       a decision the broker would refuse, or that does not encode
    └── SendRefused      the broker refused what the coordinator sends when a run fails

Business outcomes (a node failed, a run was cancelled) are events, never exceptions; poison
records go to the dead-letter topic; a record that cannot be decided on, or whose decision
the broker would refuse, fails its run (``processors.coordinator``); faults of the
connection to Kafka propagate so that the offset is not committed and the record is
processed again.
"""

from __future__ import annotations


class CoordinatorError(Exception):
    """Root of every error raised by ``processors``."""


class StateCorrupt(CoordinatorError):
    """The table holds bytes for ``run_id`` that are not a RunState."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"stored state of run {run_id} does not load: {reason}")


class StateUnstorable(CoordinatorError):
    """The state of ``run_id`` has no stored form (the coordinator fails the run instead)."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"the state of run {run_id} cannot be stored: {reason}")


class SendRefused(CoordinatorError):
    """The broker refused a record of a failed run's answer (its RunFailed, or the
    dead letter of its record), which are small by construction: a broker or topic
    configured far below Kafka's defaults. Nothing of the batch is stored."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"the broker refused a record for {topic}: {reason}")


class Unsendable(CoordinatorError):
    """A record the coordinator will not send, and why (the run is failed instead)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
