"""Errors of the coordinator.

    CoordinatorError
    └── StateCorrupt     a stored run state that no longer loads (a bug, or a foreign writer)

Business outcomes (a node failed, a run was cancelled) are events, never exceptions; poison
records go to the dead-letter topic; Kafka faults propagate so that the offset is not
committed and the record is processed again.
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
