"""The ``agents`` section of a tenant's limits, and the price of a model call."""

from __future__ import annotations

import pytest

from limits.budgets import DEFAULT_PRICES, AgentLimits, call_cost, price_of
from limits.tenant_limits import TenantLimits
from schemas.budgets import Budget, Price
from schemas.events import TokenUsage


def test_a_tenants_agent_limits_round_trip_through_their_stored_document() -> None:
    limits = TenantLimits(
        agents=AgentLimits(
            budget=Budget(usd=20, on_exceed="wait"),
            max_tokens=2048,
            allowed_models=("gpt-4o-mini",),
            prices={"house": Price(input_per_million=1, output_per_million=3)},
        )
    )
    assert TenantLimits.model_validate_json(limits.model_dump_json()) == limits


def test_a_stored_budget_without_a_bound_is_no_budget() -> None:
    doc = {"agents": {"budget": {"tokens": None, "usd": None, "on_exceed": "fail"}}}
    assert TenantLimits.model_validate(doc).agents.budget is None
    with pytest.raises(ValueError, match="a budget needs"):
        Budget.model_validate({"on_exceed": "wait"})


def test_a_model_is_priced_by_its_name_then_its_family_the_tenants_table_first() -> None:
    house = Price(input_per_million=9, output_per_million=9)
    assert price_of("gpt-4o") == DEFAULT_PRICES["gpt-4o"]
    assert price_of("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert price_of("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]  # the longest
    assert price_of("gpt-4o", {"gpt-4o": house}) == house
    assert price_of("gpt-4o-2024-08-06", {"gpt-4o": house}) == house
    assert price_of("gpt-4omni") is None  # a family is followed by "-"
    assert price_of("mystery-7b") is None
    assert price_of("x" * 1000) is None


def test_a_call_costs_its_prompt_and_completion_at_their_prices() -> None:
    usage = TokenUsage(prompt_tokens=1_000_000, completion_tokens=500_000, total_tokens=1_500_000)
    assert call_cost(usage, Price(input_per_million=2, output_per_million=8)) == 6.0
