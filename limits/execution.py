"""Fair execution: how many attempts of one node type a tenant may have running at once in
one worker process, and the named rate limits that nodes may take from.

Concurrency is counted per worker process, not across the deployment: it is what keeps one
tenant from taking every slot of a process (the slots are that process's), and it needs no
round trip. What must hold across processes (a concurrency key's limit, a rate limit) is
counted in PostgreSQL (``limits.concurrency_leases``, ``limits.rate_buckets``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.workflow import RATE_LIMIT_NAME_PATTERN

ANY_TYPE = "*"
MAX_CONCURRENCY = 10_000


class RateLimit(BaseModel):
    """``limit`` calls per ``per_seconds``, shared by every worker process.

    A token bucket: it holds ``burst`` calls (``limit`` if unset) and refills at
    ``limit / per_seconds``; so over any long stretch the rate is ``limit`` per
    ``per_seconds``, and at most ``burst`` calls go at once after a quiet spell. A provider's
    "requests per minute" refills the same way, continuously.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(ge=1, le=1_000_000)
    per_seconds: float = Field(gt=0, le=86_400)
    burst: int | None = Field(None, ge=1, le=1_000_000)

    @property
    def emission_s(self) -> float:
        """The time one call's token takes to come back."""
        return self.per_seconds / self.limit

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.limit


class ExecutionLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Node type ("*": every type not named) -> attempts running at once per worker process.
    concurrency: dict[str, int] = Field(default_factory=lambda: {ANY_TYPE: 16})
    # Name -> limit; a node takes from one with ``"rate_limit": "<name>"``.
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)

    @field_validator("concurrency")
    @classmethod
    def _counts_in_range(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {t: n for t, n in value.items() if not 1 <= n <= MAX_CONCURRENCY}
        if bad:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY} per type, not {bad}")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _names_are_names(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        bad = [n for n in value if not re.match(RATE_LIMIT_NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"rate limit names must match {RATE_LIMIT_NAME_PATTERN}: {bad}")
        return value

    def concurrency_of(self, node_type: str) -> int | None:
        """Attempts of ``node_type`` a tenant may run at once in one process (None: no
        bound of the tenant's own; the process's slots still bound it)."""
        return self.concurrency.get(node_type, self.concurrency.get(ANY_TYPE))
