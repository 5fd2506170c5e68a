"""The node fields of fair execution, ``concurrency`` and ``rate_limit``: validated at
publish, carried by the IR onto each task, guarded against agents' patches."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.compiler import compile_workflow, definition_version
from schemas.errors import InvalidWorkflow
from schemas.ir_definition import definition_from_ir
from schemas.workflow import WorkflowDefinition
from tests.unit.test_decider import Harness
from tests.unit.test_decider_agent_policy import by_agent, running_plan, unchanged
from tests.unit.test_decider_patches import rejected

KEYED = {
    "id": "fetch",
    "type": "http",
    "config": {"url": "https://example.com/{{ input.customer }}"},
    "concurrency": {"key": "{{ input.customer }}", "limit": 2},
    "rate_limit": "partner-api",
}


def definition(**node: Any) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"nodes": [{**KEYED, **node}]})


def test_a_node_may_declare_a_concurrency_key_and_a_rate_limit() -> None:
    ir = compile_workflow(definition())
    fetch = ir.nodes["fetch"]
    assert fetch.concurrency is not None
    assert (fetch.concurrency.key, fetch.concurrency.limit) == ("{{ input.customer }}", 2)
    assert fetch.rate_limit == "partner-api"
    # The way back from an IR keeps them (runs submitted before the definition travelled).
    assert definition_from_ir(ir) == definition().canonical()


def test_a_definition_without_them_keeps_its_version() -> None:
    plain = WorkflowDefinition.model_validate({"nodes": [{"id": "a", "type": "noop"}]})
    assert plain.canonical() == {"nodes": [{"id": "a", "type": "noop", "config": {}}], "edges": []}
    assert definition_version(plain) == definition_version(
        WorkflowDefinition.model_validate(plain.canonical())
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("concurrency", {"key": "{{ input.c }}", "limit": 0}, "greater than or equal to 1"),
        ("concurrency", {"key": "{{ input.c }}", "limit": 1001}, "less than or equal to 1000"),
        ("concurrency", {"key": "", "limit": 2}, "at least 1 character"),
        ("concurrency", {"key": "x" * 1001, "limit": 2}, "at most 1000 characters"),
        ("concurrency", {"key": "{{ input.c }}"}, "limit"),
        ("concurrency", {"key": "k", "limit": 2, "scope": "global"}, "Extra inputs"),
        ("rate_limit", "has spaces", "should match pattern"),
        ("rate_limit", "", "should match pattern"),
    ],
)
def test_malformed_fields_are_refused_by_shape(field: str, value: Any, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        definition(**{field: value})


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("{{ input.customer ", "concurrency.key is not a valid template"),
        ("{% if %}", "concurrency.key is not a valid template"),
        ("{{ secrets.TOKEN }}", "concurrency.key may not read secrets"),
        ("{{ input.c ~ secrets['X'] }}", "concurrency.key may not read secrets"),
    ],
)
def test_a_key_that_cannot_render_or_reads_secrets_is_refused_at_publish(
    key: str, words: str
) -> None:
    with pytest.raises(InvalidWorkflow) as refused:
        compile_workflow(definition(concurrency={"key": key, "limit": 1}))
    assert any(r.startswith("node 'fetch': " + words) for r in refused.value.reasons), (
        refused.value.reasons
    )


def test_a_plain_text_key_is_a_key() -> None:
    compile_workflow(definition(concurrency={"key": "the-one-printer", "limit": 1}))


def test_every_task_of_the_node_carries_them() -> None:
    h = Harness(compile_workflow(definition()), run_input={"customer": "c7"})
    task = h.task("fetch")
    assert task.concurrency is not None and task.concurrency.limit == 2
    assert task.rate_limit == "partner-api"


@pytest.mark.parametrize(
    ("part", "value"),
    [("concurrency", {"key": "{{ input.x }}", "limit": 1000}), ("rate_limit", "unbounded")],
)
def test_an_agent_may_not_lift_the_bounds_of_a_node_it_did_not_add(part: str, value: Any) -> None:
    h = running_plan()
    before = h.run.version
    ops = [{"op": "add", "path": f"/nodes/2/{part}", "value": value}]
    assert rejected(h.feed(by_agent(ops))) == [
        f"agent patches may not change the {part} of node 'fetch', which the agent did not "
        "add (rule: agent-may-not-change-others-nodes): leave it as it is; to do something "
        "else, add a node of your own"
    ]
    unchanged(h, before)
