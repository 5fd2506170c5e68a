"""Agent budgets: what a run's agent nodes may spend, what each model call may ask for, which
models a tenant's runs may name, and what a model call costs.

The wire shapes (``Budget``, ``Price``, ``AgentRunLimits``) live in ``schemas.budgets``,
since events, tasks and commands carry them; the tenant's section of its limits document
and the built-in price table live here.

Prices. ``DEFAULT_PRICES`` is a table of common models, in US dollars per million tokens, as
their providers listed them late in 2026. Prices change, and a provider may charge a tenant
otherwise: a tenant's ``agents.prices`` come first. A model is found by its exact name, else
by the longest name in a table that it starts with followed by ``-`` (``gpt-4o-2024-08-06``
is priced as ``gpt-4o``), the tenant's table before the built-in one. The worker prices each
call as it is made and records the cost in its ``run.model_called``: the cost is a fact of
the run's history, so a later change of either table changes no run's past spend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.budgets import (
    MAX_ALLOWED_MODELS,
    MAX_MODEL_CHARS,
    MAX_PRICED_MODELS,
    AgentRunLimits,
    Budget,
    Price,
)
from schemas.events import TokenUsage

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_PRICES",
    "AgentLimits",
    "AgentRunLimits",
    "Budget",
    "Price",
    "call_cost",
    "price_of",
]

DEFAULT_MAX_TOKENS = 4096


def _p(input_per_million: float, output_per_million: float) -> Price:
    return Price(input_per_million=input_per_million, output_per_million=output_per_million)


DEFAULT_PRICES: Mapping[str, Price] = {
    "gpt-5": _p(1.25, 10.0),
    "gpt-5-mini": _p(0.25, 2.0),
    "gpt-5-nano": _p(0.05, 0.40),
    "gpt-4.1": _p(2.0, 8.0),
    "gpt-4.1-mini": _p(0.40, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.40),
    "gpt-4o": _p(2.50, 10.0),
    "gpt-4o-mini": _p(0.15, 0.60),
    "o3": _p(2.0, 8.0),
    "o4-mini": _p(1.10, 4.40),
    "claude-opus-4": _p(15.0, 75.0),
    "claude-sonnet-4": _p(3.0, 15.0),
    "claude-haiku-4-5": _p(1.0, 5.0),
    "claude-3-5-haiku": _p(0.80, 4.0),
    "gemini-2.5-pro": _p(1.25, 10.0),
    "gemini-2.5-flash": _p(0.30, 2.50),
}


class AgentLimits(BaseModel):
    """The ``agents`` section of a tenant's limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The budget of the tenant's runs that declare none (neither their workflow nor their
    # submission); none: such runs have no bound.
    budget: Budget | None = None
    # Sent with every model call; a node's own ``max_tokens`` may only be lower.
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, le=1_000_000)
    # The models the tenant's runs may name; None: any model.
    allowed_models: tuple[str, ...] | None = Field(None, max_length=MAX_ALLOWED_MODELS)
    # The tenant's prices, before the built-in table (the module doc).
    prices: dict[str, Price] = Field(default_factory=dict, max_length=MAX_PRICED_MODELS)

    @field_validator("budget", mode="before")
    @classmethod
    def _unbounded_is_none(cls, value: Any) -> Any:
        # A document written when a budget could be stored without a bound means no budget.
        if isinstance(value, dict) and value.get("tokens") is None and value.get("usd") is None:
            return None
        return value

    def for_run(self, budget: Budget | None) -> AgentRunLimits:
        """What a run submitted now is bound to, with ``budget`` (its own, or its
        workflow's) before the tenant's default."""
        return AgentRunLimits(
            budget=budget or self.budget,
            max_tokens=self.max_tokens,
            allowed_models=self.allowed_models,
            prices=self.prices,
        )


def _lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name + "-")]
    return table[max(prefixes, key=len)] if prefixes else None


def price_of(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: the tenant's ``prices`` first, then the built-in table (the
    module doc says how names match); None if neither knows it."""
    if len(model) > MAX_MODEL_CHARS:
        return None
    return _lookup(model, prices or {}) or _lookup(model, DEFAULT_PRICES)


def call_cost(usage: TokenUsage, price: Price) -> float:
    """What one model call cost in US dollars."""
    return (
        usage.prompt_tokens * price.input_per_million
        + usage.completion_tokens * price.output_per_million
    ) / 1_000_000
