"""Errors of the replay tooling.

ReplayError
└── RebuildFailed        a projection rebuild stopped before its swap (the live tables stay)

Reading one run from the log (``aob runs show --at``) fails with ``infra.run_log``'s errors:
RunNotInLog, PositionOutsideRun.
"""

from __future__ import annotations


class ReplayError(Exception):
    """Root of the replay tooling's errors; the message says what to do."""


class RebuildFailed(ReplayError):
    pass
