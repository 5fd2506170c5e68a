"""Agent budgets on the wire: a run's budget, a raise of it, a model's price, and the agent
limits a run is submitted with.

The tenant's own document (``limits.budgets.AgentLimits``) is where these are set; what a run
is bound to is copied into its ``run.submitted`` (``AgentRunLimits``), so that the
coordinator folds it from the run's events like any other fact and never reads PostgreSQL,
and the tasks of the run's agent nodes carry it to the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Bounds that keep a budget readable as a GraphQL Int and a float of cents alike.
MAX_BUDGET_TOKENS = 1_000_000_000
MAX_BUDGET_USD = 1_000_000.0
MAX_PRICED_MODELS = 200
MAX_ALLOWED_MODELS = 200
MAX_MODEL_CHARS = 200

OnExceed = Literal["fail", "wait"]


class Budget(BaseModel):
    """What a run's agent nodes may spend together: tokens and/or money (at least one), and
    what happens when an agent's next turn would pass it: the node fails (``fail``), or waits
    for a person to raise it (``wait``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(
        None, ge=1, le=MAX_BUDGET_TOKENS, description="Tokens (prompt and completion) in all."
    )
    usd: float | None = Field(
        None, gt=0, le=MAX_BUDGET_USD, description="US dollars, priced per model."
    )
    on_exceed: OnExceed = Field(
        "fail", description="`fail`: the node fails. `wait`: it waits for a raise."
    )

    @model_validator(mode="after")
    def _bounded(self) -> Budget:
        if self.tokens is None and self.usd is None:
            raise ValueError("a budget needs `tokens`, `usd` or both")
        return self


class BudgetRaise(BaseModel):
    """New bounds for a run's budget, given with the approval of a node that waits on it.
    A bound not named stays as it was; each one named must be higher than the one it
    replaces."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(None, ge=1, le=MAX_BUDGET_TOKENS)
    usd: float | None = Field(None, gt=0, le=MAX_BUDGET_USD)

    @model_validator(mode="after")
    def _names_a_bound(self) -> BudgetRaise:
        if self.tokens is None and self.usd is None:
            raise ValueError("a raise names `tokens`, `usd` or both")
        return self


class Price(BaseModel):
    """A model's price in US dollars per million tokens. Cached prompt tokens are priced as
    any prompt token: a budget errs on the side of spending less."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0, le=10_000)
    output_per_million: float = Field(ge=0, le=10_000)


class AgentRunLimits(BaseModel):
    """The agent limits a run was submitted with, as its ``run.submitted`` records them and
    its agent tasks carry them. ``max_tokens`` caps what each model call asks for (a node's
    own ``max_tokens`` may only be lower); ``allowed_models`` (``None``: any) is the
    tenant's list when the run was submitted; ``prices`` are the tenant's own prices, which
    the workers put before their built-in table."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    budget: Budget | None = Field(None, description="The run's budget; none: no bound.")
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    allowed_models: tuple[str, ...] | None = Field(None, max_length=MAX_ALLOWED_MODELS)
    prices: dict[str, Price] = Field(default_factory=dict, max_length=MAX_PRICED_MODELS)


def named_models(nodes: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(node id, model) of every agent node among ``nodes`` (definition JSON) that names its
    model. A node that names none gets the worker's default model, which only the worker
    knows: the worker checks it too."""
    out = []
    for node in nodes:
        config = node.get("config")
        model = config.get("model") if isinstance(config, Mapping) else None
        if node.get("type") == "agent" and isinstance(model, str) and model:
            out.append((str(node.get("id")), model))
    return out


def model_refusal(node_id: str, model: str, allowed: tuple[str, ...] | None) -> str | None:
    """Why ``node_id`` may not name ``model`` under the tenant's ``allowed`` models (None:
    any), or None if it may."""
    if allowed is None or model in allowed:
        return None
    names = ", ".join(allowed) if allowed else "none"
    return (
        f"node {node_id!r} names model {model!r}, which the tenant does not allow "
        f"(allowed: {names})"
    )


def model_refusals(
    nodes: Iterable[Mapping[str, Any]], allowed: tuple[str, ...] | None
) -> list[str]:
    """Every agent node among ``nodes`` that names a model the tenant does not allow."""
    reasons = (model_refusal(node_id, model, allowed) for node_id, model in named_models(nodes))
    return [r for r in reasons if r is not None]
