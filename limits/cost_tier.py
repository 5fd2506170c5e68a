"""The cost tier of a workflow version: which of a tenant's tiers its submissions count in.

The rule: **a version's cost is the number of its agent nodes**, and its tier is the first of
the tenant's tiers (in their order) whose ``max_agent_nodes`` is at least that number, or
that has none (the last tier always has none: ``AdmissionLimits`` refuses tiers without such
a catch-all). With the default tiers: no agent node is ``light`` (100 a minute), one or two
are ``agentic`` (20), three or more are ``heavy`` (5).

Why agent nodes, and neither their ``max_turns`` nor their tools:

- An agent node is what makes a run expensive: each is a loop of model calls, where every
  other node type is one bounded, cheap step. The number of agent nodes is what a person
  reads off a definition, so the tier a version lands in is never a surprise.
- ``max_turns`` bounds one loop (1 to 32 calls), but what the calls cost is the business of
  the run's budget (``limits.budgets``: tokens and money per run, enforced on the usage the
  coordinator folds), which measures spend instead of guessing it. Weighing turns here too
  would count the same cost twice, and would move a version to another tier when someone
  tunes a loop's bound.
- Tools: the one that changes cost, ``patch_workflow``, lets an agent add agent nodes while
  the run runs; how many is bounded by the coordinator's spawn limit per run, and what they
  spend by the budget. A tier is fixed at submission, from the published version.

The tier is computed at each submission from the version's definition and the tenant's
tiers of the moment, so a changed rule applies to the next submission, with no migration of
published versions. It is pure and cheap: one pass over at most 500 nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from limits.admission import Tier

AGENT = "agent"


def agent_nodes(definition: Mapping[str, Any]) -> int:
    """How many agent nodes a definition (its JSON form: ``{"nodes": [...], ...}``) holds."""
    nodes: Iterable[Any] = definition.get("nodes") or ()
    return sum(1 for node in nodes if isinstance(node, Mapping) and node.get("type") == AGENT)


def tier_for(agents: int, tiers: Sequence[Tier]) -> Tier:
    """The first tier that takes a version of ``agents`` agent nodes."""
    for tier in tiers:
        if tier.max_agent_nodes is None or agents <= tier.max_agent_nodes:
            return tier
    # AdmissionLimits makes the last tier a catch-all; tiers built by hand may not be.
    raise ValueError(f"no tier takes a version of {agents} agent nodes: the last must take any")


def cost_tier(definition: Mapping[str, Any], tiers: Sequence[Tier]) -> Tier:
    """The tier of a version, from its definition: see the rule in this module's docstring."""
    return tier_for(agent_nodes(definition), tiers)
