"""The ``map`` node's config: one node run once per item of a list.

```json
{"id": "each", "type": "map", "config": {
  "over": "nodes.fetch.output.body.items",
  "node": {"type": "transform", "config": {"output": "{{ item.name }}"},
           "retry": {"max_attempts": 3}, "timeout_s": 10},
  "max_parallel": 20, "failure": "fail_fast"}}
```

No worker runs a map: the coordinator does (``run_model.mapping``). When the node is ready it
reads ``over``, a path into the run context it holds (``input...`` or ``nodes.<id>.output...``),
and schedules one task of the inner type per item, ``item`` and ``index`` in the task's
template context. The path is read by the coordinator, which reads no storage, so it must end
in a value that travels inline: an upstream output kept only in the CAS (over 16 KB) cannot be
mapped over (the node fails, saying so); map over a smaller part of it, or make the upstream
output smaller.

The inner node may be any type a worker runs (built-in or registered), except ``map`` (no
nesting), ``hitl``, ``agent`` and ``subworkflow``: their approvals, budget turns and child
runs name a node, not an item.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.workflow import RATE_LIMIT_NAME_PATTERN, ConcurrencyKey, RetryPolicy

MAP = "map"
# The longest list a map takes: each item is a few events and a slot in the run's state.
MAX_MAP_ITEMS = 10_000
MAX_PARALLEL = 1000
# Types a map cannot run per item (the module doc says why).
NOT_MAPPABLE: frozenset[str] = frozenset({MAP, "hitl", "agent", "subworkflow"})
# ``input`` or ``nodes.<id>.output``, then keys or list indices, dot-separated.
_SEGMENT = r"[A-Za-z0-9_-]+"
OVER_PATTERN = re.compile(
    rf"^(input|nodes\.{_SEGMENT}\.output)(\.{_SEGMENT})*$",
)

MapFailure = Literal["fail_fast", "collect"]


class MapInner(BaseModel):
    """The node run per item: its type and config, and its own retries and time limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy | None = Field(None, description="Per item; one attempt if absent.")
    timeout_s: float | None = Field(None, gt=0, le=86_400, description="Per item attempt.")
    concurrency: ConcurrencyKey | None = Field(None, description="Per item attempt.")
    rate_limit: str | None = Field(None, pattern=RATE_LIMIT_NAME_PATTERN)


class MapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    over: str = Field(
        min_length=1,
        max_length=1000,
        description="A path into the run context: `input.xs` or `nodes.<id>.output.a.b`.",
    )
    node: MapInner
    max_parallel: int = Field(10, ge=1, le=MAX_PARALLEL, description="Items running at once.")
    failure: MapFailure = Field(
        "fail_fast",
        description="`fail_fast`: the first item that fails for good fails the map, and no "
        "new item starts. `collect`: every item runs, and the output lists results and errors.",
    )

    @property
    def retry(self) -> RetryPolicy:
        return self.node.retry or RetryPolicy()


def map_config(config: dict[str, Any]) -> MapConfig:
    """``config`` as a map's (pydantic's ValidationError if it is not one)."""
    return MapConfig.model_validate(config)


def map_config_reasons(node_id: str, config: dict[str, Any], usable: set[str]) -> list[str]:
    """Why ``config`` is not a map's, each reason naming the node; ``usable`` are the types
    the definition may use (built-in and registered)."""
    where = f"node {node_id!r} (map)"
    try:
        parsed = map_config(config)
    except ValidationError as e:
        return [
            f"{where}: config.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors()
        ][:10]
    reasons = []
    over = parsed.over.strip()
    if over.startswith("{{") and over.endswith("}}"):
        over = over[2:-2].strip()
    if not OVER_PATTERN.match(over):
        reasons.append(
            f"{where}: config.over {parsed.over!r} is not a path into the run context: write "
            "`input.<key>...` or `nodes.<node id>.output.<key>...` (keys and list indices, "
            "dot-separated)"
        )
    inner = parsed.node.type
    if inner in NOT_MAPPABLE:
        reasons.append(
            f"{where}: config.node.type {inner!r} cannot run per item (map nodes do not nest; "
            "hitl and agent nodes name their node, not an item, in their approvals and turns)"
        )
    elif inner not in usable:
        reasons.append(
            f"{where}: config.node.type {inner!r} is not a type this workflow can use "
            f"(built-in or registered: {', '.join(sorted(usable))})"
        )
    return reasons


def over_path(over: str) -> list[str]:
    """The segments of ``over`` (a ``{{ }}`` around it is allowed)."""
    text = over.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    return text.split(".")
