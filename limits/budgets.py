"""Agent budgets: what a run's agent nodes may spend, what each model call may ask for, and
which models a tenant's runs may name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """A run's budget: tokens and/or money (``None``: no bound), and what happens when an
    agent's next turn would pass it: the node fails, or waits for a person to raise it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(None, ge=1)
    usd: float | None = Field(None, gt=0)
    on_exceed: Literal["fail", "wait"] = "fail"


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class AgentLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: Budget = Budget()  # the tenant's default for runs that declare none
    max_tokens: int = Field(4096, ge=1, le=1_000_000)  # sent with every model call
    allowed_models: tuple[str, ...] | None = None  # None: any model
    prices: dict[str, Price] = Field(default_factory=dict)  # model -> price
