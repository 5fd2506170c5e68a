"""Fair execution: how many attempts of one node type a tenant may have running at once in
one worker process, and the named rate limits that nodes may take from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RateLimit(BaseModel):
    """``limit`` calls per ``per_seconds``, shared by every worker process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(ge=1, le=1_000_000)
    per_seconds: float = Field(gt=0, le=86_400)


class ExecutionLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Node type ("*": every type not named) -> attempts running at once per worker process.
    concurrency: dict[str, int] = Field(default_factory=lambda: {"*": 16})
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
