"""What the command API checks and records of a tenant's agent limits (``limits.budgets``).

- Publishing, and submitting (the tenant's list may have changed since), refuse a workflow
  whose agent nodes name a model the tenant does not allow: 422 naming each node and model.
  A node that names no model gets the worker's default, which only the worker knows; the
  worker checks every model again when it runs (defence in depth).
- A submission binds the run to its budget, the first of: the submission's own, the
  workflow's, the tenant's default; and to the tenant's cap on ``max_tokens``, its allowed
  models and its prices, all as they are now. They go into the run's ``run.submitted``, so
  the coordinator folds them from the log and never reads PostgreSQL. A budget in dollars
  is refused when the workflow names a model that has no price to count them with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from command_api.errors import InvalidInput
from limits.budgets import AgentLimits, price_of
from schemas.budgets import AgentRunLimits, Budget, model_refusals, named_models


def check_models(nodes: Iterable[Mapping[str, Any]], agents: AgentLimits) -> None:
    """422 if an agent node among ``nodes`` (definition JSON) names a model the tenant does
    not allow, naming every such node and model."""
    reasons = model_refusals(nodes, agents.allowed_models)
    if reasons:
        raise InvalidInput(
            "the workflow names a model the tenant does not allow: " + "; ".join(reasons),
            errors=reasons,
        )


def run_limits(
    definition: Mapping[str, Any], given: Budget | None, agents: AgentLimits
) -> AgentRunLimits:
    """What a run of ``definition`` (canonical JSON) submitted now with budget ``given`` is
    bound to (the module doc); 422 for a budget in dollars that a named model cannot be
    counted against, or a model the tenant does not allow."""
    nodes = definition.get("nodes") or []
    check_models(nodes, agents)
    declared = definition.get("budget")
    budget = given or (Budget.model_validate(declared) if declared is not None else None)
    limits = agents.for_run(budget)
    if limits.budget is not None and limits.budget.usd is not None:
        unpriced = [
            f"node {node_id!r} names model {model!r}, which has no price"
            for node_id, model in named_models(nodes)
            if price_of(model, agents.prices) is None
        ]
        if unpriced:
            raise InvalidInput(
                "the run's budget is in US dollars, and a model it would count has no price "
                "(give it in the tenant's agents.prices): " + "; ".join(unpriced),
                errors=unpriced,
            )
    return limits
