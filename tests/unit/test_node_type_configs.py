"""Registered node types (``node_types``) in the pure parts: a config judged by its type's
schema at publish and at patch, the IR keeping the types a workflow uses, and the coordinator
routing their nodes to their workers."""

from __future__ import annotations

from typing import Any

import pytest

from run_model import NodeStatus
from run_model.testing import patch_submitted
from schemas.compiler import compile_workflow, validate_graph
from schemas.errors import InvalidWorkflow
from schemas.events import NodeSkipped, PatchApplied, PatchRejected, PatchSubmitted
from schemas.ir import IRNodeType
from schemas.node_type_configs import config_reasons, schema_reasons
from schemas.workflow import WorkflowDefinition
from tests.unit.test_decider import Harness, types
from tests.unit.test_decider_patches import add_edge, add_node, node

SHOUT = IRNodeType(
    config_schema={
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1}, "times": {"type": "integer"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    description="Shouts the text.",
)


def definition(*nodes: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> Any:
    return WorkflowDefinition.model_validate({"nodes": list(nodes), "edges": edges or []})


def test_a_config_that_breaks_its_types_schema_is_refused_with_the_schemas_words() -> None:
    wf = definition(node("loud", "shout", times="twice"))
    reasons = validate_graph(wf, {"shout": SHOUT})
    assert "node 'loud' (shout): config: 'text' is a required property" in reasons
    assert "node 'loud' (shout): config.times: 'twice' is not of type 'integer'" in reasons
    with pytest.raises(InvalidWorkflow):
        compile_workflow(wf, {"shout": SHOUT})


def test_a_templated_string_is_left_for_the_worker_to_judge_once_rendered() -> None:
    wf = definition(node("loud", "shout", text="hi", times="{{ input.times }}"))
    assert validate_graph(wf, {"shout": SHOUT}) == []


def test_a_type_neither_built_in_nor_registered_is_refused_naming_both_lists() -> None:
    (reason,) = validate_graph(definition(node("loud", "shout", text="hi")), {})
    assert "unknown type 'shout'" in reason
    assert (
        "built-in: agent, condition, hitl, http, map, noop, subworkflow, transform, wait_event"
        in reason
    )
    assert "PUT /v1/node-types" in reason
    (reason,) = validate_graph(definition(node("x", "whisper")), {"shout": SHOUT})
    assert "registered: shout" in reason


def test_the_ir_keeps_the_registered_types_the_workflow_uses_and_no_other() -> None:
    other = IRNodeType(description="unused")
    wf = definition(
        node("loud", "shout", text="hi"),
        node("ask", "agent", prompt="p", tools=["lookup", "http"]),
    )
    ir = compile_workflow(wf, {"shout": SHOUT, "lookup": other, "unused": other})
    assert sorted(ir.node_types) == ["lookup", "shout"]  # `lookup` as the agent's tool
    assert ir.node_types["shout"] == SHOUT


def test_a_schema_that_is_no_json_schema_is_told_where() -> None:
    assert schema_reasons({"type": "object"}) == []
    (reason,) = schema_reasons({"type": "objekt"})
    assert reason.startswith("not a valid JSON Schema: ") and "/type" in reason
    assert schema_reasons([1]) == ["a schema must be a JSON object, not list"]


def test_reasons_from_one_config_are_bounded() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    config = {f"k{i}": "x" for i in range(50)}
    assert len(config_reasons("n", "t", config, schema)) == 10
    assert config_reasons("n", "t", config, {}) == []


def shout_run() -> Harness:
    """start -> loud (a registered `shout`) -> end, published with the type."""
    wf = definition(
        node("start"),
        node("loud", "shout", text="hi"),
        node("end"),
        edges=[{"from": "start", "to": "loud"}, {"from": "loud", "to": "end"}],
    )
    return Harness(compile_workflow(wf, {"shout": SHOUT}))


def test_a_node_of_a_registered_type_goes_to_its_types_topic() -> None:
    h = shout_run()
    h.succeed("start")
    task = h.task("loud")
    assert (task.node_type, task.config) == ("shout", {"text": "hi"})
    h.succeed("loud", {"text": "HI"})
    assert h.task("end").nodes["loud"].output == {"text": "HI"}


def test_a_run_whose_ir_lacks_the_type_skips_the_node_as_before() -> None:
    wf = definition(node("loud", "shout", text="hi"))
    ir = compile_workflow(wf, {"shout": SHOUT}).model_copy(update={"node_types": {}})
    h = Harness(ir)
    assert any(isinstance(e, NodeSkipped) for e in h.log), types(h.log)
    assert h.status("loud") is NodeStatus.SKIPPED


def test_a_patch_may_add_a_node_of_a_type_the_run_has_and_its_config_is_judged() -> None:
    h = shout_run()
    bad = h.feed(
        _patch([add_node(node("again", "shout", times=2)), add_edge("loud", "again")]),
    )
    (refusal,) = [e for e in bad if isinstance(e, PatchRejected)]
    assert "node 'again' (shout): config: 'text' is a required property" in (
        refusal.payload.reasons
    )
    fixed = [add_node(node("again", "shout", text="x")), add_edge("loud", "again")]
    good = h.feed(_patch(fixed, tag="2"))
    (applied,) = [e for e in good if isinstance(e, PatchApplied)]
    assert "shout" in applied.payload.ir.node_types


def test_a_patch_may_not_bring_a_registered_type_the_run_does_not_have() -> None:
    h = shout_run()
    out = h.feed(_patch([add_node(node("w", "whisper")), add_edge("loud", "w")]))
    (refusal,) = [e for e in out if isinstance(e, PatchRejected)]
    assert any("unknown type 'whisper'" in r for r in refusal.payload.reasons)


def _patch(ops: list[dict[str, Any]], tag: str = "1") -> PatchSubmitted:
    return patch_submitted("run-1", ops, "more shouting", tag=tag)


REMOTE = {"$ref": "https://schemas.example/shout.json"}  # never fetched: no connection is made
ENDLESS = {"$ref": "#"}
NOWHERE = {"properties": {"n": {"$ref": "#/$defs/missing"}}}


def test_a_schema_that_cannot_be_applied_is_refused_when_registered() -> None:
    (remote,) = schema_reasons(REMOTE)
    assert remote.startswith("cannot be applied: ") and "shout.json" in remote
    assert "only references within the schema are followed" in remote
    assert schema_reasons(ENDLESS) == [
        "cannot be applied: a $ref leads back to itself with nothing in between"
    ]
    local = {"$defs": {"n": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/n"}}}
    assert schema_reasons(local) == []


def test_a_config_judged_by_a_schema_that_cannot_be_applied_gets_a_reason_not_an_error() -> None:
    for schema in (REMOTE, ENDLESS, NOWHERE):
        (reason,) = config_reasons("loud", "shout", {"n": 1}, schema)
        assert reason.startswith("node 'loud' (shout): the type's config schema cannot be applied")
    wf = definition(node("loud", "shout", n=1))
    (reason,) = validate_graph(wf, {"shout": IRNodeType(config_schema=NOWHERE)})
    assert "/$defs/missing" in reason
