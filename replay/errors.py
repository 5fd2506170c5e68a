"""Errors of the replay tooling.

ReplayError
├── RunNotInLog          the log holds no event of the run asked for
├── PositionOutsideRun   ``--at`` names no point of the run's history
└── RebuildFailed        a projection rebuild stopped before its swap (the live tables stay)
"""

from __future__ import annotations


class ReplayError(Exception):
    """Root of the replay tooling's errors; the message says what to do."""


class RunNotInLog(ReplayError):
    pass


class PositionOutsideRun(ReplayError):
    pass


class RebuildFailed(ReplayError):
    pass
