"""Agent tools on the pure side: the entries of ``tools`` as publishing checks them, the
identity of a tool call, and the coordinator's fold of ``run.tool_called`` (what a retried
attempt is given, what the run's spend counts)."""

from __future__ import annotations

from typing import Any

import pytest

from run_model import NodeStatus, RunState, step
from run_model.budgets import run_spend
from run_model.testing import EPOCH, build_ir, failed, run_submitted, started, tool_called
from schemas.agent_tools import (
    McpServer,
    ToolEntryError,
    ToolSet,
    call_id,
    parse_tools,
    registered_type_names,
)
from schemas.compiler import validate_graph
from schemas.envelope import Event
from schemas.ir import IRNodeType
from schemas.tasks import NodeTask
from schemas.workflow import WorkflowDefinition

# --- the entries of `tools` ---------------------------------------------------------------


def test_every_kind_of_entry_is_read_in_the_authors_order() -> None:
    tools = parse_tools(
        [
            "http",
            "patch_workflow",
            "finish",
            "shout",
            {"mcp": {"url": "https://docs.example/mcp", "name": "docs", "tools": ["search"]}},
            {"mcp": {"url": "http://127.0.0.1:9/mcp", "name": "all"}},
            "shout",
        ]
    )
    assert tools == ToolSet(
        builtins=("http", "patch_workflow"),
        node_types=("shout",),
        mcp=(
            McpServer("docs", "https://docs.example/mcp", ("search",)),
            McpServer("all", "http://127.0.0.1:9/mcp", None),
        ),
    )
    assert tools.mcp[0].offers("search") and not tools.mcp[0].offers("delete")
    assert tools.mcp[1].offers("anything")
    assert parse_tools(None) == ToolSet() == parse_tools([])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("Shell!", "'Shell!' is not a tool"),
        ("agent", "the 'agent' node type cannot be a tool"),
        ("hitl", "the 'hitl' node type cannot be a tool"),
        (7, "an entry must be a tool name"),
        ({"mcp": {"url": "ftp://x.example/mcp", "name": "d"}}, "scheme 'ftp' is not http"),
        ({"mcp": {"url": "http://u:p@x.example/mcp", "name": "d"}}, "must not carry credentials"),
        ({"mcp": {"url": "http:///mcp", "name": "d"}}, "'url' has no host"),
        ({"mcp": {"url": "docs.example/mcp", "name": "d"}}, "is not an absolute http(s) URL"),
        ({"mcp": {"url": "http://x.example/mcp", "name": "Docs"}}, "MCP 'name' must be"),
        ({"mcp": {"url": "http://x.example/mcp"}}, "MCP 'name' must be"),
        ({"mcp": {"url": "http://x.example/", "name": "d", "tools": "search"}}, "'tools' must"),
        ({"mcp": {"url": "http://x.example/", "name": "d", "extra": 1}}, "unknown keys: extra"),
        ({"mcp": {"url": "http://x.example/", "name": "d", "tools": ["a b"]}}, "not a tool name"),
        ({"mcp": "http://x.example/"}, 'must be {"mcp": {"url"'),
    ],
)
def test_a_bad_entry_is_refused_with_its_place_and_reason(entry: Any, reason: str) -> None:
    with pytest.raises(ToolEntryError) as e:
        parse_tools(["http", entry])
    assert str(e.value).startswith("tools[1]: ")
    assert reason in str(e.value)


def test_two_mcp_servers_may_not_share_a_name() -> None:
    entry = {"mcp": {"url": "http://x.example/", "name": "d"}}
    with pytest.raises(ToolEntryError, match="MCP server name 'd' is used more than once"):
        parse_tools([entry, entry])


def test_publishing_refuses_an_agent_naming_a_type_that_is_not_registered() -> None:
    definition = WorkflowDefinition.model_validate(
        {"nodes": [{"id": "a", "type": "agent", "config": {"prompt": "p", "tools": ["shout"]}}]}
    )
    (reason,) = validate_graph(definition)
    assert reason.startswith("node 'a': tool 'shout' is not a node type registered")
    assert validate_graph(definition, {"shout": IRNodeType()}) == []


def test_publishing_refuses_an_agent_whose_tools_are_not_tools() -> None:
    definition = WorkflowDefinition.model_validate(
        {
            "nodes": [
                {"id": "ok", "type": "agent", "config": {"prompt": "p", "tools": ["http"]}},
                {
                    "id": "bad",
                    "type": "agent",
                    "config": {
                        "prompt": "p",
                        "tools": ["Shell!", {"mcp": {"url": "file:///etc", "name": "f"}}],
                    },
                },
            ]
        }
    )
    reasons = validate_graph(definition)
    assert len(reasons) == 1
    assert reasons[0].startswith("node 'bad': tools[0]: 'Shell!' is not a tool")
    assert "tools[1]: MCP server 'f': 'url' scheme 'file' is not http or https" in reasons[0]


def test_the_registered_types_an_agent_names_are_listed_for_the_registry() -> None:
    assert registered_type_names(["http", "shout", "patch_workflow", "whisper"]) == [
        "shout",
        "whisper",
    ]
    assert registered_type_names("not a list") == []


# --- the identity of a call ------------------------------------------------------------------


def test_a_call_id_is_the_same_for_the_same_call_whatever_the_key_order() -> None:
    a = call_id("run-1", "write", "http", {"url": "u", "method": "GET"}, 0)
    assert a == call_id("run-1", "write", "http", {"method": "GET", "url": "u"}, 0)
    others = {
        call_id("run-1", "write", "http", {"url": "u", "method": "GET"}, 1),  # a second one
        call_id("run-1", "write", "http", {"url": "v", "method": "GET"}, 0),
        call_id("run-1", "write", "shout", {"url": "u", "method": "GET"}, 0),
        call_id("run-1", "other", "http", {"url": "u", "method": "GET"}, 0),
        call_id("run-2", "write", "http", {"url": "u", "method": "GET"}, 0),
    }
    assert a not in others and len(others) == 5


# --- the coordinator's fold ------------------------------------------------------------------


class Run:
    """An agent node with two attempts, driven through ``step`` as the adapter does."""

    def __init__(self, **ir_changes: Any) -> None:
        ir = build_ir({"write": "agent"}, [], max_attempts=2)
        if ir_changes:
            ir = ir.model_copy(update=ir_changes)
        self.state: RunState | None = None
        self.tasks: list[NodeTask] = []
        self.feed(run_submitted("run-1", ir))

    def feed(self, event: Event) -> None:
        self.state, decision = step(self.state, event, EPOCH)
        self.tasks.extend(decision.tasks)

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state


def test_a_retried_attempt_is_given_the_calls_that_answered_and_not_those_that_failed() -> None:
    r = Run()
    first = r.tasks[-1]
    assert first.tool_calls == []
    r.feed(started(first))
    answered = tool_called(first, "http", {"url": "u"}, result={"status": 200})
    broken = tool_called(first, "shout", {"text": "hi"}, ok=False, error="no worker")
    for event in (answered, answered, broken):  # a duplicate changes nothing
        r.feed(event)
    calls = r.run.nodes["write"].tool_calls
    assert set(calls) == {answered.payload.call_id, broken.payload.call_id}
    r.feed(failed(first, "worker lost"))
    second = r.tasks[-1]
    assert second.attempt == 2
    assert [c.call_id for c in second.tool_calls] == [answered.payload.call_id]
    assert second.tool_calls[0].result == {"status": 200}
    assert second.tool_calls[0].attempt == 1
    # The failed call made again by the second attempt answers: it replaces the failure,
    # and a failure reported after a success changes nothing.
    retried = tool_called(second, "shout", {"text": "hi"}, result={"text": "HI"})
    late = tool_called(second, "http", {"url": "u"}, ok=False, error="late")
    r.feed(retried)
    r.feed(late)
    calls = r.run.nodes["write"].tool_calls
    assert calls[broken.payload.call_id].ok and calls[broken.payload.call_id].attempt == 2
    assert calls[answered.payload.call_id].ok
    assert r.run.nodes["write"].status is NodeStatus.SCHEDULED


def test_the_runs_spend_counts_each_distinct_tool_call_once() -> None:
    r = Run()
    task = r.tasks[-1]
    r.feed(started(task))
    r.feed(tool_called(task, "http", {"url": "u"}, result=1))
    r.feed(tool_called(task, "http", {"url": "u"}, ordinal=1, result=2))
    r.feed(tool_called(task, "shout", {}, ok=False))
    assert run_spend(r.run).tool_calls == 3
    assert run_spend(r.run).tokens == 0


def test_a_call_of_a_node_the_run_does_not_have_is_ignored() -> None:
    r = Run()
    task = r.tasks[-1].model_copy(update={"node_id": "ghost"})
    before = r.run.nodes
    r.feed(tool_called(task, "http", {"url": "u"}, result=1))
    assert r.run.nodes == before


def test_an_agent_task_carries_the_schemas_of_the_registered_types_it_names() -> None:
    ir = build_ir({"write": "agent"}, [])
    node = ir.nodes["write"].model_copy(
        update={"config": {"prompt": "p", "tools": ["http", "shout", "unknown"]}}
    )
    shout = {"config_schema": {"type": "object"}, "output_schema": None, "description": "d"}
    other = {"config_schema": {}, "output_schema": None, "description": "not named"}
    types = {"shout": IRNodeType(**shout), "other": IRNodeType(**other)}
    r = Run(nodes={"write": node}, node_types=types)
    assert r.tasks[-1].tool_types == {"shout": shout}
    plain = Run()
    assert plain.tasks[-1].tool_types is None


def test_the_timeline_shows_each_tool_call_with_its_outcome() -> None:
    from cli.timeline import event_detail

    ok = {"tool": "http", "attempt": 1, "ok": True, "duration_ms": 12.4, "result_ref": None}
    assert event_detail("run.tool_called", ok) == "http (attempt 1) → ok in 12 ms"
    large = {**ok, "result_ref": "cas://sha256:" + "0" * 64}
    assert event_detail("run.tool_called", large) == "http (attempt 1) → ok in 12 ms → CAS"
    failed = {"tool": "kb__search", "attempt": 2, "ok": False, "error": "refused: x"}
    assert event_detail("run.tool_called", failed) == "kb__search (attempt 2) → error: refused: x"
