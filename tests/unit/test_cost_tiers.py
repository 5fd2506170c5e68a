"""A version's cost tier (``limits.cost_tier``) and the rules of a tenant's tiers
(``limits.admission``): agent nodes count, nothing else does; the first tier that takes the
count wins; tiers must leave no version without one."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from limits.admission import (
    DEFAULT_TIERS,
    MAX_PER_MINUTE,
    AdmissionLimits,
    Tier,
    unthrottled,
)
from limits.cost_tier import agent_nodes, cost_tier, tier_for
from limits.tenant_limits import TenantLimits


def definition(*types: str, **config: Any) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": t, "config": dict(config)} for i, t in enumerate(types)]
    return {"nodes": nodes, "edges": []}


@pytest.mark.parametrize(
    ("types", "tier"),
    [
        (("noop", "http", "transform", "hitl", "condition"), "light"),
        (("http", "agent"), "agentic"),
        (("agent", "hitl", "agent"), "agentic"),
        (("agent", "agent", "agent"), "heavy"),
        (("agent",) * 40, "heavy"),
    ],
)
def test_the_default_tiers_are_the_seeds_three(types: tuple[str, ...], tier: str) -> None:
    assert cost_tier(definition(*types), DEFAULT_TIERS).name == tier
    assert [(t.name, t.per_minute) for t in DEFAULT_TIERS] == [
        ("light", 100),
        ("agentic", 20),
        ("heavy", 5),
    ]


def test_only_agent_nodes_count_not_their_turns_or_tools() -> None:
    plain = definition("agent", "agent")
    busy = definition("agent", "agent", max_turns=32, tools=["patch_workflow"])
    assert agent_nodes(plain) == agent_nodes(busy) == 2
    assert cost_tier(plain, DEFAULT_TIERS) == cost_tier(busy, DEFAULT_TIERS)
    # A type named like an agent is not one; nor is a malformed entry.
    assert agent_nodes({"nodes": [{"type": "Agent"}, {"type": "agents"}, "agent", None]}) == 0
    assert agent_nodes({}) == 0


def test_a_tenants_own_tiers_decide_in_their_order() -> None:
    tiers = AdmissionLimits(
        tiers=(
            Tier(name="solo", max_agent_nodes=1, per_minute=50),
            Tier(name="crowd", max_agent_nodes=None, per_minute=2),
        )
    ).tiers
    assert cost_tier(definition("noop"), tiers).name == "solo"
    assert cost_tier(definition("agent"), tiers).name == "solo"
    assert cost_tier(definition("agent", "agent"), tiers).name == "crowd"


def test_tiers_built_by_hand_without_a_catch_all_are_refused_at_use() -> None:
    with pytest.raises(ValueError, match="no tier takes a version of 3 agent nodes"):
        tier_for(3, (Tier(name="few", max_agent_nodes=2, per_minute=1),))


@given(st.lists(st.sampled_from(["agent", "noop", "http", "hitl"]), min_size=1, max_size=60))
def test_the_tier_is_the_first_whose_bound_takes_the_count(types: list[str]) -> None:
    chosen = cost_tier(definition(*types), DEFAULT_TIERS)
    count = types.count("agent")
    assert chosen.max_agent_nodes is None or count <= chosen.max_agent_nodes
    earlier = DEFAULT_TIERS[: DEFAULT_TIERS.index(chosen)]
    assert all(t.max_agent_nodes is not None and count > t.max_agent_nodes for t in earlier)


@pytest.mark.parametrize(
    ("tiers", "says"),
    [
        ([], "at least 1"),
        ([{"name": "a", "max_agent_nodes": 2, "per_minute": 1}], "the last tier ('a') must"),
        (
            [
                {"name": "a", "per_minute": 1},
                {"name": "b", "per_minute": 1},
            ],
            "only the last tier may leave max_agent_nodes out",
        ),
        (
            [
                {"name": "a", "max_agent_nodes": 2, "per_minute": 1},
                {"name": "b", "max_agent_nodes": 2, "per_minute": 1},
                {"name": "c", "per_minute": 1},
            ],
            "must grow from tier to tier",
        ),
        (
            [{"name": "a", "max_agent_nodes": 0, "per_minute": 1}, {"name": "a", "per_minute": 1}],
            "tier names must differ",
        ),
        ([{"name": "Big Tier", "per_minute": 1}], "pattern"),
        ([{"name": "a", "per_minute": -1}], "greater than or equal to 0"),
        ([{"name": "a", "per_minute": MAX_PER_MINUTE + 1}], "less than or equal to"),
        ([{"name": "a", "per_minute": 1, "max_turns": 3}], "Extra inputs"),
    ],
)
def test_tiers_that_leave_a_version_without_a_tier_are_refused(
    tiers: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        TenantLimits.model_validate({"admission": {"tiers": tiers}})


def test_unthrottled_keeps_the_tiers_and_raises_every_number() -> None:
    raised = unthrottled()
    assert [t.name for t in raised.tiers] == [t.name for t in DEFAULT_TIERS]
    assert [t.max_agent_nodes for t in raised.tiers] == [t.max_agent_nodes for t in DEFAULT_TIERS]
    numbers = [t.per_minute for t in raised.tiers] + [
        raised.submissions_per_minute,
        raised.forks_per_minute,
        raised.patches_per_minute,
        raised.approvals_per_minute,
    ]
    assert numbers == [MAX_PER_MINUTE] * 7
    # It is a document the API would take.
    assert TenantLimits.model_validate({"admission": raised.model_dump(mode="json")})
