"""Submission limits: how many runs a tenant may start a minute, by the cost tier of the
workflow version they start, and the limits on forks, patches and approvals."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Tier(BaseModel):
    """A cost tier: the versions with at most ``max_agent_nodes`` agent nodes (``None``: any
    number) that no earlier tier took."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")
    max_agent_nodes: int | None = Field(None, ge=0)
    per_minute: int = Field(ge=0, le=1_000_000)


DEFAULT_TIERS = (
    Tier(name="light", max_agent_nodes=0, per_minute=100),
    Tier(name="agentic", max_agent_nodes=2, per_minute=20),
    Tier(name="heavy", max_agent_nodes=None, per_minute=5),
)


class AdmissionLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    submissions_per_minute: int = Field(300, ge=0, le=1_000_000)
    forks_per_minute: int = Field(60, ge=0, le=1_000_000)
    patches_per_minute: int = Field(120, ge=0, le=1_000_000)
    approvals_per_minute: int = Field(600, ge=0, le=1_000_000)
