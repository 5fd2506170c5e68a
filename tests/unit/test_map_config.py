"""Publishing a map node: its config is judged whole, every fault with its reason; the IR
carries a registered inner type so the coordinator routes its items."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.compiler import compile_workflow, validate_graph
from schemas.ir import IRNodeType
from schemas.workflow import WorkflowDefinition

SHOUT = IRNodeType(
    config_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }
)


def with_map(**config: Any) -> WorkflowDefinition:
    base: dict[str, Any] = {
        "over": "nodes.fetch.output.body.items",
        "node": {"type": "transform", "config": {"output": "{{ item }}"}},
        "max_parallel": 20,
        "failure": "fail_fast",
    }
    return WorkflowDefinition.model_validate(
        {
            "nodes": [
                {"id": "fetch", "type": "noop"},
                {"id": "each", "type": "map", "config": {**base, **config}},
            ],
            "edges": [{"from": "fetch", "to": "each"}],
        }
    )


def test_a_well_formed_map_publishes() -> None:
    assert validate_graph(with_map()) == []
    assert validate_graph(with_map(over="input.xs", failure="collect", max_parallel=1)) == []
    assert validate_graph(with_map(over="{{ nodes.fetch.output.items.0.list }}")) == []


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"over": "fetch.output"}, "is not a path into the run context"),
        ({"over": "nodes.fetch.output | length"}, "is not a path into the run context"),
        ({"over": 3}, "config.over"),
        ({"max_parallel": 0}, "config.max_parallel"),
        ({"max_parallel": 1001}, "config.max_parallel"),
        ({"failure": "ignore"}, "config.failure"),
        ({"node": {"type": "shout"}}, "is not a type this workflow can use"),
        ({"node": {"type": "hitl", "config": {"prompt": "ok?"}}}, "cannot run per item"),
        ({"node": {"type": "map"}}, "cannot run per item"),
        ({"node": {"config": {}}}, "config.node.type"),
        ({"extra": 1}, "config.extra"),
        ({"node": {"type": "transform", "rate_limit": "no spaces"}}, "config.node.rate_limit"),
        (
            {"node": {"type": "http", "concurrency": {"key": "{{ secrets.K }}", "limit": 2}}},
            "concurrency.key",
        ),
    ],
)
def test_a_bad_map_config_is_refused_with_the_reason(config: dict[str, Any], says: str) -> None:
    reasons = validate_graph(with_map(**config))
    assert any(says in r and "node 'each" in r for r in reasons), reasons


def test_a_registered_inner_type_is_judged_by_its_schema_and_kept_in_the_ir() -> None:
    bad = with_map(node={"type": "shout", "config": {}})
    reasons = validate_graph(bad, {"shout": SHOUT})
    assert any("'text' is a required property" in r for r in reasons), reasons
    good = with_map(node={"type": "shout", "config": {"text": "{{ item }}"}})
    ir = compile_workflow(good, {"shout": SHOUT, "other": SHOUT})
    assert set(ir.node_types) == {"shout"}
