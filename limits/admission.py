"""Submission limits: how many runs a tenant may start a minute, by the cost tier of the
workflow version they start, and the limits on forks, patches and approvals.

Every number is a count per sliding minute, checked in PostgreSQL by every command API
process against the same rows (``limits.admission_check``). A tier's rule (which versions it
takes) is in ``limits.cost_tier``.
"""

from __future__ import annotations

from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Far above what one deployment admits (the whole stack does ~130 submissions/s on 2 cores),
# and what ``unthrottled`` sets.
MAX_PER_MINUTE = 1_000_000
MAX_TIERS = 10


class Tier(BaseModel):
    """A cost tier: the versions with at most ``max_agent_nodes`` agent nodes (``None``: any
    number) that no earlier tier took."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")
    max_agent_nodes: int | None = Field(None, ge=0)
    per_minute: int = Field(ge=0, le=MAX_PER_MINUTE)


DEFAULT_TIERS = (
    Tier(name="light", max_agent_nodes=0, per_minute=100),
    Tier(name="agentic", max_agent_nodes=2, per_minute=20),
    Tier(name="heavy", max_agent_nodes=None, per_minute=5),
)


class AdmissionLimits(BaseModel):
    """Per tenant: submissions by tier and in all, and forks, patches and approvals (each a
    limit of its own). A limit of 0 refuses every such command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: tuple[Tier, ...] = Field(DEFAULT_TIERS, min_length=1, max_length=MAX_TIERS)
    submissions_per_minute: int = Field(300, ge=0, le=MAX_PER_MINUTE)
    forks_per_minute: int = Field(60, ge=0, le=MAX_PER_MINUTE)
    patches_per_minute: int = Field(120, ge=0, le=MAX_PER_MINUTE)
    approvals_per_minute: int = Field(600, ge=0, le=MAX_PER_MINUTE)

    @model_validator(mode="after")
    def _tiers_cover_every_version_once(self) -> AdmissionLimits:
        """Every version falls in exactly one tier: names differ, bounds grow, and the last
        tier takes any number of agent nodes (so no version is left without a tier)."""
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must differ; given {names}")
        bounds = [t.max_agent_nodes for t in self.tiers]
        if bounds[-1] is not None:
            raise ValueError(
                f"the last tier ({names[-1]!r}) must take any number of agent nodes: "
                "leave its max_agent_nodes out (null)"
            )
        finite = [b for b in bounds[:-1] if b is not None]
        if len(finite) != len(bounds) - 1:
            raise ValueError("only the last tier may leave max_agent_nodes out (null)")
        if any(a >= b for a, b in pairwise(finite)):
            raise ValueError(f"max_agent_nodes must grow from tier to tier; given {bounds}")
        return self


def unthrottled(limits: AdmissionLimits | None = None) -> AdmissionLimits:
    """``limits`` (the defaults if None) with every number at ``MAX_PER_MINUTE``: the same
    tiers and checks, none of which a benchmark reaches."""
    limits = limits or AdmissionLimits()
    return AdmissionLimits(
        tiers=tuple(t.model_copy(update={"per_minute": MAX_PER_MINUTE}) for t in limits.tiers),
        submissions_per_minute=MAX_PER_MINUTE,
        forks_per_minute=MAX_PER_MINUTE,
        patches_per_minute=MAX_PER_MINUTE,
        approvals_per_minute=MAX_PER_MINUTE,
    )
