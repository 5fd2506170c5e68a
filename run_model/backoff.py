"""How long to wait before retrying a failed attempt.

Exponential backoff with "equal jitter": the n-th retry waits a draw from ``[d/2, d]`` where
``d = min(backoff_s * 2**(n-1), max_backoff_s)``. The jitter spreads the retries of many runs
that failed together (one flaky target) instead of sending them back in lockstep; the lower
half-bound keeps the wait from collapsing to nothing.

The draw is a hash of (run, node, attempt), not a random number: the decider stays a pure
function, and a coordinator that decides again after a crash plans the very same moment.
"""

from __future__ import annotations

import hashlib

from schemas.workflow import DEFAULT_MAX_BACKOFF_S, RetryPolicy


def jitter_fraction(*parts: str) -> float:
    """A number in ``[0, 1)`` that is a pure function of ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def retry_delay_s(policy: RetryPolicy, failed_attempt: int, run_id: str, node_id: str) -> float:
    """Seconds between the failure of ``failed_attempt`` and the start of the next one."""
    if policy.backoff_s <= 0:
        return 0.0
    cap = DEFAULT_MAX_BACKOFF_S if policy.max_backoff_s is None else policy.max_backoff_s
    ceiling = min(policy.backoff_s * 2 ** min(failed_attempt - 1, 30), cap)
    draw = jitter_fraction(run_id, node_id, str(failed_attempt))
    return float(round(ceiling / 2 + draw * ceiling / 2, 3))
