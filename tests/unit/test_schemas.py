"""The wire contract: envelope, registry, codec, definitions and the compiler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas
from schemas import (
    Actor,
    ForkRun,
    InvalidWorkflow,
    NodeSucceeded,
    PoisonRecord,
    RunCompleted,
    RunSubmitted,
    SubmitPatch,
    SubmitRun,
    WorkflowDefinition,
    compile_workflow,
    decode_event,
    definition_version,
    deterministic_id,
    encode_event,
)
from schemas.envelope import Event, Payload, event
from schemas.errors import DuplicateEventType
from schemas.export import export_json_schemas
from schemas.position import Position

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"
ACTOR = Actor(kind="user", id="k1", tenant="acme")


def definition(nodes: list[tuple[str, str]], edges: list[tuple[str, str] | tuple[str, str, str]]):
    return WorkflowDefinition.model_validate(
        {
            "nodes": [{"id": i, "type": t} for i, t in nodes],
            "edges": [
                {"from": e[0], "to": e[1], **({"when": e[2]} if len(e) == 3 else {})} for e in edges
            ],
        }
    )


def test_public_surface_is_deliberate() -> None:
    # A change here changes what users import: update this list on purpose, not by accident.
    assert sorted(schemas.__all__) == sorted(
        json.loads((Path(__file__).parent.parent / "snapshots" / "schemas_all.json").read_text())
    )


def test_every_event_round_trips_and_keeps_its_wire_name() -> None:
    ir = compile_workflow(definition([("a", "noop")], []))
    ev = RunSubmitted(
        aggregate_id="run-1",
        actor=ACTOR,
        payload={
            "workflow_id": "w",
            "workflow_name": "n",
            "version": ir.version,
            "input": {"x": [1, 2]},
            "definition": definition([("a", "noop")], []).canonical(),
            "ir": ir,
            "definition_ref": "cas://sha256:" + "0" * 64,
            "ir_ref": "cas://sha256:" + "1" * 64,
        },
    )
    key, value, headers = encode_event(ev)
    assert key == b"run-1"
    assert dict(headers)["aob-type"] == b"run.submitted"
    assert dict(headers)["aob-schema-version"] == b"2"
    assert decode_event(value) == ev


def test_events_from_a_newer_producer_with_unknown_fields_still_load() -> None:
    raw = json.loads((FIXTURES / "run.node_succeeded.v1.json").read_text())
    raw["payload"]["added_by_a_later_release"] = True
    raw["also_new"] = 1
    ev = decode_event(json.dumps(raw).encode())
    assert isinstance(ev, NodeSucceeded)
    assert ev.payload.output == {"greeting": "hello"}


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_golden_fixtures_still_load(fixture: Path) -> None:
    raw = json.loads(fixture.read_text())
    ev = decode_event(fixture.read_bytes())
    assert ev.type == raw["type"]
    assert ev.event_id == raw["event_id"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"type": "run.exploded"}', "unknown event type"),
        (b'{"type": "run.started", "payload": {}}', "invalid run.started"),
        (None, "no value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"type": "run.started", "schema_version": "x", "payload": {}}', "invalid run.started"),
    ],
)
def test_poison_records_are_named_not_raised_as_crashes(value: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonRecord, match=reason):
        decode_event(value)


def test_a_second_class_with_a_taken_wire_name_fails_loudly() -> None:
    with pytest.raises(DuplicateEventType):

        @event("run.started")
        class Impostor(Event):
            payload: Payload


def test_type_must_match_the_class() -> None:
    raw = json.loads((FIXTURES / "run.node_succeeded.v1.json").read_text())
    raw["type"] = "run.started"
    with pytest.raises(ValidationError):
        NodeSucceeded.model_validate(raw)


def test_deterministic_ids_are_stable_and_distinct() -> None:
    a = deterministic_id("evt-1", "schedule", "n1", "1")
    assert a == deterministic_id("evt-1", "schedule", "n1", "1")
    assert a != deterministic_id("evt-1", "schedule", "n1", "2")
    # parts are separated, so shifting text between parts changes the id
    assert deterministic_id("ab", "c") != deterministic_id("a", "bc")


def test_commands_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        schemas.SubmitRun.model_validate({"workflow_id": "w", "surprise": 1})
    with pytest.raises(ValidationError):
        WorkflowDefinition.model_validate({"nodes": [{"id": "a", "type": "noop", "cfg": {}}]})


# --- compiler ---------------------------------------------------------------------------


def test_fan_out_fan_in_compiles_with_a_topological_order() -> None:
    d = definition(
        [("start", "noop"), ("a", "transform"), ("b", "transform"), ("join", "noop")],
        [("start", "a"), ("start", "b"), ("a", "join"), ("b", "join")],
    )
    ir = compile_workflow(d)
    assert ir.roots == ["start"]
    assert ir.order == ["start", "a", "b", "join"]
    assert {e.node for e in ir.nodes["join"].predecessors} == {"a", "b"}
    assert ir.version == definition_version(d)


def test_version_is_independent_of_key_order_and_defaults_spelling() -> None:
    a = WorkflowDefinition.model_validate({"nodes": [{"id": "a", "type": "noop"}]})
    b = WorkflowDefinition.model_validate(
        {"edges": [], "nodes": [{"type": "noop", "config": {}, "id": "a"}]}
    )
    assert definition_version(a) == definition_version(b)


@pytest.mark.parametrize(
    ("nodes", "edges", "reason"),
    [
        ([("a", "noop"), ("b", "noop")], [("a", "b"), ("b", "a")], "cycle: a -> b -> a"),
        ([("a", "noop")], [("a", "ghost")], "'ghost', which does not exist"),
        ([("a", "noop")], [("a", "a")], "to itself"),
        ([("a", "noop"), ("a", "noop")], [], "used more than once"),
        ([("a", "teleport")], [], "unknown type 'teleport'"),
        ([("c", "condition"), ("b", "noop")], [("c", "b")], "needs when="),
        ([("c", "condition"), ("b", "noop")], [("c", "b", "maybe")], "not 'maybe'"),
        ([("h", "hitl"), ("b", "noop")], [("h", "b", "true")], "not 'true'"),
        ([("a", "noop"), ("b", "noop")], [("a", "b", "true")], "take no guard"),
        ([("a", "noop"), ("b", "noop")], [("a", "b"), ("a", "b")], "more than once"),
    ],
)
def test_invalid_graphs_are_refused_with_a_reason(nodes, edges, reason) -> None:
    with pytest.raises(InvalidWorkflow) as info:
        compile_workflow(definition(nodes, edges))
    assert any(reason in r for r in info.value.reasons), info.value.reasons


@pytest.mark.parametrize(
    ("model", "fields", "says"),
    [
        (SubmitRun, {"workflow_id": "w", "version": "v" * 201}, "at most 200 characters"),
        (SubmitPatch, {"patch": [{"op": "test"}] * 1001, "reason": "r"}, "at most 1000 items"),
        (ForkRun, {"at": "t:0:" + "1" * 297}, "at most 300 characters"),
    ],
)
def test_every_command_field_is_bounded(model: type, fields: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        model.model_validate(fields)


def test_a_reason_quotes_a_long_config_value_shortened() -> None:
    config = {"prompt": "ok?", "default_outcome": "x" * 10**6}
    hitl = {"id": "h", "type": "hitl", "config": config, "timeout_s": 5}
    with pytest.raises(InvalidWorkflow) as info:
        compile_workflow(WorkflowDefinition.model_validate({"nodes": [hitl]}))
    assert [r for r in info.value.reasons if "default_outcome 'xxx" in r and len(r) < 200]


def test_an_edge_names_nodes_no_longer_than_node_ids() -> None:
    a, b = {"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}
    for end in ("from", "to", "when"):
        edge = {"from": "a", "to": "b", end: "n" * 65}
        with pytest.raises(ValidationError, match="at most 64 characters"):
            WorkflowDefinition.model_validate({"nodes": [a, b], "edges": [edge]})


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 30), st.data())
def test_random_dags_compile_to_an_order_that_respects_every_edge(n: int, data) -> None:
    nodes = [(f"n{i}", "noop") for i in range(n)]
    edges = [
        (f"n{i}", f"n{j}")
        for i in range(n)
        for j in range(i + 1, n)
        if data.draw(st.booleans(), label=f"{i}->{j}")
    ]
    ir = compile_workflow(definition(nodes, edges))
    rank = {nid: k for k, nid in enumerate(ir.order)}
    assert sorted(ir.order) == sorted(nid for nid, _ in nodes)
    assert all(rank[a] < rank[b] for a, b in edges)


# --- positions and export ---------------------------------------------------------------


def test_position_tokens_round_trip_and_refuse_garbage() -> None:
    p = Position("aob.runs.events", 3, 1534)
    assert Position.parse(p.token()) == p
    for bad in ["", "aob.runs.events", "t:x:1", "t:1:-1", ":1:2"]:
        with pytest.raises(ValueError, match="position"):
            Position.parse(bad)


def test_json_schema_export_writes_every_contract_model(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    names = {p.name for p in written}
    assert "event.run.submitted.schema.json" in names
    assert "workflow.definition.schema.json" in names
    schema = json.loads((tmp_path / "command.submit_run.schema.json").read_text())
    assert schema["additionalProperties"] is False


def test_a_v1_run_submitted_is_upcast_with_a_definition_rebuilt_from_its_ir() -> None:
    ev = decode_event((FIXTURES / "run.submitted.v1.json").read_bytes())
    assert isinstance(ev, RunSubmitted)
    assert ev.schema_version == 2
    assert ev.payload.definition == {
        "nodes": [
            {
                "id": "greet",
                "type": "transform",
                "config": {"output": {"greeting": "hello {{ input.name }}"}},
            }
        ],
        "edges": [],
    }
    rebuilt = compile_workflow(WorkflowDefinition.model_validate(ev.payload.definition))
    assert rebuilt.nodes == ev.payload.ir.nodes
    assert rebuilt.order == ev.payload.ir.order


def test_a_v1_run_completed_is_a_v2_one_with_every_output_inline() -> None:
    ev = decode_event((FIXTURES / "run.completed.v1.json").read_bytes())
    assert isinstance(ev, RunCompleted) and ev.schema_version == 2
    assert set(ev.payload.output) == {"post", "report"} and ev.payload.output_elsewhere == []
