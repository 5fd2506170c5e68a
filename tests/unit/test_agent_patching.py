"""The agent's ``patch_workflow`` tool against the scripted model served in this process, with
the coordinator's verdicts given by a stand-in ``VerdictSource``: what is submitted, with
which id and base version, what the model is told, and what the user message shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from openai import AsyncOpenAI

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.serve import Running
from run_model.agent_policy import RULES
from schemas.canonical import canonical_json
from schemas.compiler import compile_workflow, definition_version
from schemas.envelope import Event, system_actor
from schemas.events import (
    ModelCalled,
    PatchApplied,
    PatchAppliedPayload,
    PatchRejected,
    PatchRejectedPayload,
    PatchSubmitted,
)
from schemas.position import Position
from schemas.tasks import NodeTask
from schemas.workflow import WorkflowDefinition
from workers.agent.calls import RetryPolicy
from workers.agent.handler import AgentHandler
from workers.agent.patching import PatchCall, patch_id
from workers.agent.prompt import SYSTEM_PREFIX, RunDefinition, first_messages
from workers.agent.tools import PATCH_WORKFLOW, definitions
from workers.agent.verdicts import Verdict, VerdictQuery
from workers.errors import NodeError
from workers.handlers import Job

SCHEDULED_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

DEFINITION: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"n": 1}}},
        {"id": "plan", "type": "agent", "config": {"prompt": "p", "tools": ["patch_workflow"]}},
    ],
    "edges": [{"from": "start", "to": "plan"}],
}
VERSION = definition_version(WorkflowDefinition.model_validate(DEFINITION))

ADD_NOTIFY = [
    {"op": "add", "path": "/nodes/-", "value": {"id": "notify", "type": "noop"}},
    {"op": "add", "path": "/edges/-", "value": {"from": "plan", "to": "notify"}},
]


def canonical(definition: dict[str, Any]) -> dict[str, Any]:
    return WorkflowDefinition.model_validate(definition).canonical()


def with_node(definition: dict[str, Any], node_id: str) -> dict[str, Any]:
    return {
        "nodes": [*definition["nodes"], {"id": node_id, "type": "noop"}],
        "edges": [*definition["edges"], {"from": "plan", "to": node_id}],
    }


class Verdicts:
    """The coordinator's answers, in order, each made from the query it answers."""

    def __init__(self, *answers: Callable[[VerdictQuery], Verdict | None]) -> None:
        self.answers = list(answers)
        self.queries: list[VerdictQuery] = []

    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        self.queries.append(query)
        assert self.answers, f"one patch too many: {query}"
        return self.answers.pop(0)(query)


def applied(definition: dict[str, Any], added: list[str]) -> Callable[[VerdictQuery], Verdict]:
    model = WorkflowDefinition.model_validate(definition)
    version = definition_version(model)

    def make(query: VerdictQuery) -> Verdict:
        return PatchApplied(
            aggregate_id=query.run_id,
            causation_id=query.patch_id,
            actor=system_actor("coordinator"),
            payload=PatchAppliedPayload(
                patch_id=query.patch_id,
                from_version=VERSION,
                to_version=version,
                definition=model.canonical(),
                ir=compile_workflow(model),
                definition_ref="cas://sha256:" + "0" * 64,
                ir_ref="cas://sha256:" + "1" * 64,
                added_nodes=added,
            ),
        )

    return make


def rejected(
    reasons: list[str], version: str | None = None, definition: dict[str, Any] | None = None
) -> Callable[[VerdictQuery], Verdict]:
    def make(query: VerdictQuery) -> Verdict:
        return PatchRejected(
            aggregate_id=query.run_id,
            causation_id=query.patch_id,
            actor=system_actor("coordinator"),
            payload=PatchRejectedPayload(
                patch_id=query.patch_id,
                reasons=reasons,
                current_version=version,
                current_definition=definition,
            ),
        )

    return make


class Reports:
    """The job's reporter: keeps the events, says where each landed (as the worker's does)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> Position:
        self.events.append(event)
        return Position("aob.runs.events", 3, 100 + len(self.events))

    @property
    def patches(self) -> list[PatchSubmitted]:
        return [e for e in self.events if isinstance(e, PatchSubmitted)]

    @property
    def tool_calls(self) -> list[list[str]]:
        return [e.payload.tool_calls for e in self.events if isinstance(e, ModelCalled)]


def job(prompt: str, reports: Reports, *, tools: bool = True, attempt: int = 1) -> Job:
    config: dict[str, Any] = {"prompt": prompt}
    if tools:
        config["tools"] = ["patch_workflow"]
    task = NodeTask(
        task_id=f"task-{attempt}",
        run_id="run-1",
        tenant="acme",
        node_id="plan",
        node_type="agent",
        attempt=attempt,
        config=config,
        timeout_s=30,
        input={"topic": "otters"},
        scheduled_at=SCHEDULED_AT,
        version=VERSION if tools else None,
        definition=DEFINITION if tools else None,
    )
    return Job(task, {"input": task.input, "nodes": {}}, reports)


@pytest.fixture
async def openai_client(scripted: Running) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=scripted.base_url, api_key="test", max_retries=0) as client:
        yield client


def agent(client: AsyncOpenAI, verdicts: Verdicts) -> AgentHandler:
    return AgentHandler(
        client, default_model="m", verdicts=verdicts, retry=RetryPolicy(first_delay_s=0.01)
    )


def patch_reply(patch: Any, reason: Any = "a step to tell the team") -> dict[str, Any]:
    return {
        "tool_calls": [{"name": "patch_workflow", "arguments": {"patch": patch, "reason": reason}}]
    }


FINISH = {"tool_calls": [{"name": "finish", "arguments": {"output": "planned"}}]}


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


def last_tool_message(request: dict[str, Any]) -> str:
    message = request["body"]["messages"][-1]
    assert message["role"] == "tool"
    return str(message["content"])


# --- the user message ---------------------------------------------------------------------


def test_the_definition_is_in_the_user_message_and_the_system_prefix_does_not_change() -> None:
    plain = first_messages("", "Plan it", {"input": {}, "nodes": {}})
    patching = first_messages(
        "", "Plan it", {"input": {}, "nodes": {}}, RunDefinition(VERSION, DEFINITION)
    )
    other_run = first_messages(
        "",
        "Plan it",
        {"input": {"x": 1}, "nodes": {}},
        RunDefinition("v-other", with_node(DEFINITION, "x")),
    )
    assert plain[0] == patching[0] == other_run[0] == {"role": "system", "content": SYSTEM_PREFIX}
    user = patching[1]["content"]
    assert user.startswith(plain[1]["content"])
    assert f"version {VERSION}" in user
    assert canonical_json(DEFINITION).decode() in user  # compact, canonical
    assert '{"op":"add","path":"/nodes/-"' in user and '"path":"/edges/-"' in user
    assert "RFC 6902" in user


async def test_an_accepted_patch_is_answered_with_the_new_version_and_the_next_builds_on_it(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    second = [{"op": "add", "path": "/nodes/-", "value": {"id": "audit", "type": "noop"}}]
    await admin.add_script(
        t, [patch_reply(ADD_NOTIFY), patch_reply(second, "and an audit"), FINISH]
    )
    after_first = with_node(DEFINITION, "notify")
    after_second = with_node(after_first, "audit")
    verdicts = Verdicts(applied(after_first, ["notify"]), applied(after_second, ["audit"]))
    reports = Reports()

    out = await agent(openai_client, verdicts)(job(f"Plan {t}", reports))

    assert out["text"] == "planned" and out["turns"] == 3
    first, second_patch = reports.patches
    assert first.actor.kind == "agent" and first.actor.id == "run-1/plan"
    assert first.actor.tenant == "acme"
    assert first.aggregate_id == "run-1" and first.causation_id == "task-1"
    assert first.payload.patch == ADD_NOTIFY
    assert first.payload.reason == "a step to tell the team"
    assert (first.payload.node_id, first.payload.attempt) == ("plan", 1)
    assert first.payload.base_version == VERSION
    v1 = definition_version(WorkflowDefinition.model_validate(after_first))
    assert second_patch.payload.base_version == v1  # the version its own first patch made

    # Each wait asked for that patch, where it landed, since the task was scheduled.
    assert [q.patch_id for q in verdicts.queries] == [first.event_id, second_patch.event_id]
    assert verdicts.queries[0].submitted == Position("aob.runs.events", 3, 102)
    assert verdicts.queries[0].since == SCHEDULED_AT
    assert 0 < verdicts.queries[0].timeout_s < 30

    requests = await admin.requests(t)
    user = requests[0]["body"]["messages"][1]["content"]
    assert canonical_json(DEFINITION).decode() in user and f"version {VERSION}" in user
    assert requests[0]["body"]["messages"][0]["content"] == SYSTEM_PREFIX
    assert last_tool_message(requests[1]) == (
        f"accepted: the run is now at version {v1} (added: notify; removed: none; "
        f"changed: none). Current definition: {canonical_json(canonical(after_first)).decode()}"
    )
    assert last_tool_message(requests[2]).startswith("accepted: the run is now at version ")
    assert reports.tool_calls == [["patch_workflow"], ["patch_workflow"], ["finish"]]


async def test_a_refused_patch_is_answered_with_its_reasons_and_the_corrected_one_accepted(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    cycle = [{"op": "add", "path": "/edges/-", "value": {"from": "plan", "to": "start"}}]
    await admin.add_script(t, [patch_reply(cycle), patch_reply(ADD_NOTIFY), FINISH])
    reasons = [
        "the patch makes a cycle: start -> plan -> start",
        "node 'start' already ran: its edges cannot change",
    ]
    moved_on = with_node(DEFINITION, "other")
    moved_version = definition_version(WorkflowDefinition.model_validate(moved_on))
    after = with_node(moved_on, "notify")
    verdicts = Verdicts(rejected(reasons, moved_version, moved_on), applied(after, ["notify"]))
    reports = Reports()

    out = await agent(openai_client, verdicts)(job(f"Plan {t}", reports))

    assert out["text"] == "planned" and out["turns"] == 3
    requests = await admin.requests(t)
    assert last_tool_message(requests[1]) == (
        "refused, nothing was applied:\n"
        "- the patch makes a cycle: start -> plan -> start\n"
        "- node 'start' already ran: its edges cannot change\n"
        f"The run is at version {moved_version}; write the patch against its current "
        f"definition: {canonical_json(moved_on).decode()}\n"
        "Correct the patch and call patch_workflow again, or finish."
    )
    assert last_tool_message(requests[2]).startswith("accepted: ")
    refused, corrected = reports.patches
    assert refused.payload.base_version == VERSION
    assert corrected.payload.base_version == moved_version  # what the refusal said
    assert refused.event_id != corrected.event_id


async def test_a_refusal_without_a_definition_keeps_the_version_shown(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, [patch_reply(ADD_NOTIFY), patch_reply(ADD_NOTIFY, "again"), FINISH])
    verdicts = Verdicts(
        rejected(["an agent may add at most 5 agent nodes to a run"]),
        rejected(["an agent may add at most 5 agent nodes to a run"], VERSION),
    )
    reports = Reports()
    await agent(openai_client, verdicts)(job(f"Plan {t}", reports))
    assert [p.payload.base_version for p in reports.patches] == [VERSION, VERSION]
    requests = await admin.requests(t)
    assert last_tool_message(requests[1]) == (
        "refused, nothing was applied:\n"
        "- an agent may add at most 5 agent nodes to a run\n"
        "Correct the patch and call patch_workflow again, or finish."
    )


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"patch": {"op": "add"}, "reason": "r"}, "'patch' must be a list"),
        ({"patch": ["add"], "reason": "r"}, "every item of 'patch' must be an operation"),
        ({"patch": ADD_NOTIFY, "reason": "  "}, "'reason' must be a non-empty string"),
        ({"patch": ADD_NOTIFY}, "'reason' must be a non-empty string"),
        ({"reason": "r"}, "'patch' must be a list"),
    ],
)
async def test_malformed_arguments_are_answered_with_an_error_and_nothing_is_submitted(
    arguments: dict[str, Any],
    problem: str,
    openai_client: AsyncOpenAI,
    admin: ScriptedLLMClient,
) -> None:
    t = token()
    call = {"tool_calls": [{"name": "patch_workflow", "arguments": arguments}]}
    await admin.add_script(t, [call, FINISH])
    verdicts = Verdicts()
    reports = Reports()
    out = await agent(openai_client, verdicts)(job(f"Plan {t}", reports))
    assert out["text"] == "planned"
    answer = last_tool_message((await admin.requests(t))[1])
    assert answer.startswith("error: nothing was submitted: ")
    assert problem in answer
    assert answer.endswith("Call patch_workflow again with corrected arguments, or finish.")
    assert reports.patches == [] and verdicts.queries == []


async def test_arguments_that_are_not_json_are_an_error_not_a_submission(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    call = {"tool_calls": [{"name": "patch_workflow", "arguments": '{"patch": ['}]}
    await admin.add_script(t, [call, FINISH])
    reports = Reports()
    await agent(openai_client, Verdicts())(job(f"Plan {t}", reports))
    answer = last_tool_message((await admin.requests(t))[1])
    assert answer.startswith("error: the arguments of patch_workflow are not valid JSON")
    assert reports.patches == []


# --- patch ids ---------------------------------------------------------------------------


async def test_a_redelivered_task_submits_the_same_patch_id_and_another_patch_a_new_one(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    other = [{"op": "add", "path": "/nodes/-", "value": {"id": "other", "type": "noop"}}]
    await admin.add_script(
        t,
        [
            *[patch_reply(ADD_NOTIFY), FINISH],  # first delivery
            *[patch_reply(ADD_NOTIFY), FINISH],  # redelivery: the same conversation
            *[patch_reply(other), FINISH],  # a third delivery where the model chose otherwise
        ],
    )
    after = with_node(DEFINITION, "notify")
    handler = agent(openai_client, Verdicts(*[applied(after, ["notify"])] * 3))
    deliveries = [Reports(), Reports(), Reports()]
    for reports in deliveries:
        await handler(job(f"Plan {t}", reports))
    first, again, different = (r.patches[0].event_id for r in deliveries)
    assert first == again
    assert different != first


def test_the_patch_id_depends_on_the_attempt_the_place_and_the_content() -> None:
    j = job("p", Reports())
    call = PatchCall(ADD_NOTIFY, "why")
    same = patch_id(j, 1, 0, PatchCall(json.loads(json.dumps(ADD_NOTIFY)), "why"))
    assert patch_id(j, 1, 0, call) == same
    others = {
        patch_id(j, 2, 0, call),
        patch_id(j, 1, 1, call),
        patch_id(j, 1, 0, PatchCall(ADD_NOTIFY, "another reason")),
        patch_id(j, 1, 0, PatchCall(ADD_NOTIFY[:1], "why")),
        patch_id(job("p", Reports(), attempt=2), 1, 0, call),
    }
    assert same not in others and len(others) == 5


# --- no verdict ----------------------------------------------------------------------------


async def test_no_verdict_in_time_fails_the_node_retryably(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, [patch_reply(ADD_NOTIFY), FINISH])
    reports = Reports()
    with pytest.raises(NodeError) as caught:
        await agent(openai_client, Verdicts(lambda q: None))(job(f"Plan {t}", reports))
    assert caught.value.retryable
    assert str(caught.value).startswith(f"no verdict on patch {reports.patches[0].event_id}")
    assert "is the coordinator running?" in str(caught.value)


async def test_a_log_that_cannot_be_read_fails_the_node_retryably(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, [patch_reply(ADD_NOTIFY), FINISH])

    def unreachable(query: VerdictQuery) -> Verdict | None:
        raise KafkaConnectionError("no broker")

    with pytest.raises(NodeError) as caught:
        await agent(openai_client, Verdicts(unreachable))(job(f"Plan {t}", Reports()))
    assert caught.value.retryable and "could not read the verdict on patch" in str(caught.value)


async def test_a_node_without_the_tool_sees_no_definition(
    openai_client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, [FINISH])
    await agent(openai_client, Verdicts())(job(f"Plan {t}", Reports(), tools=False))
    [request] = await admin.requests(t)
    assert "workflow definition" not in request["body"]["messages"][1]["content"]
    assert [tool["function"]["name"] for tool in request["body"]["tools"]] == ["finish"]


def test_the_patch_tool_tells_the_model_every_rule_up_front() -> None:
    (tool,) = [d for d in definitions((PATCH_WORKFLOW,)) if d["function"]["name"] == PATCH_WORKFLOW]
    description = tool["function"]["description"]
    for rule in RULES:
        assert rule in description, rule
