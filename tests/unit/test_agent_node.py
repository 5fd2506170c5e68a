"""The agent node against the scripted model, served in this process on 127.0.0.1 and called
through a real ``AsyncOpenAI`` client: the messages it sends, its turn loop, its tools, its
one retry layer and the events it reports."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from openai import AsyncOpenAI

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.scripts import SCRIPTED_MARK
from infra.scripted_llm.serve import Running
from schemas.envelope import Event
from schemas.events import ModelCalled
from schemas.tasks import NodeTask
from workers.agent.calls import RetryPolicy
from workers.agent.handler import MAX_NAME_CHARS, AgentHandler, tool_name
from workers.agent.prompt import SYSTEM_PREFIX, first_messages
from workers.agent.tools import answer
from workers.agent.verdicts import Verdict, VerdictQuery
from workers.errors import ConfigError, NodeError
from workers.handlers import Job


class NoVerdicts:
    """A coordinator that never answers: these tests submit no well-formed patch."""

    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        raise AssertionError(f"no patch was expected here, got {query}")


@pytest.fixture
async def agent(scripted: Running) -> AsyncIterator[AgentHandler]:
    async with AsyncOpenAI(base_url=scripted.base_url, api_key="test", max_retries=0) as client:
        yield AgentHandler(
            client,
            default_model="test-model",
            verdicts=NoVerdicts(),
            retry=RetryPolicy(first_delay_s=0.01),
        )


def task(config: dict[str, Any], attempt: int = 1, run_id: str = "run-1") -> NodeTask:
    return NodeTask(
        task_id=f"task-{run_id}-{attempt}",
        run_id=run_id,
        tenant="acme",
        node_id="write",
        node_type="agent",
        attempt=attempt,
        config=config,
        timeout_s=30,
        input={"topic": "otters"},
    )


class Reports:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def model_calls(self) -> list[ModelCalled]:
        return [e for e in self.events if isinstance(e, ModelCalled)]


def job(config: dict[str, Any], reports: Reports, **kw: Any) -> Job:
    t = task(config, **kw)
    nodes = {"fetch": {"output": {"body": "otters hold hands"}, "status": "SUCCEEDED"}}
    return Job(t, {"input": t.input, "nodes": nodes}, reports)


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


# --- messages ---------------------------------------------------------------------------


def test_the_system_prefix_is_identical_across_runs_and_the_context_comes_after() -> None:
    a = first_messages("Write plainly.", "Summarise A", {"input": {"x": 1}, "nodes": {}})
    b = first_messages(
        "Write plainly.",
        "Summarise B",
        {"input": {"y": [2, 3]}, "nodes": {"n": {"output": "z", "status": "SUCCEEDED"}}},
    )
    assert a[0] == b[0]
    assert a[0]["role"] == "system"
    assert a[0]["content"].startswith(SYSTEM_PREFIX)
    assert a[0]["content"].endswith("Write plainly.")
    assert a[1]["role"] == "user" and b[1]["role"] == "user"
    assert a[1]["content"].startswith("Summarise A")
    assert '{"input": {"y": [2, 3]}' in b[1]["content"]
    assert "Summarise" not in a[0]["content"] and "input" not in a[0]["content"].split("\n")[-1]


def test_the_context_is_rendered_the_same_whatever_its_key_order() -> None:
    a = first_messages("", "p", {"nodes": {}, "input": {"b": 1, "a": 2}})
    b = first_messages("", "p", {"input": {"a": 2, "b": 1}, "nodes": {}})
    assert a == b


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"prompt": ""},
        {"prompt": "p", "max_turns": 0},
        {"prompt": "p", "max_turns": 33},
        {"prompt": "p", "max_turns": "3"},
        {"prompt": "p", "tools": ["shell"]},
        {"prompt": "p", "tools": "patch_workflow"},
        {"prompt": "p", "system": 3},
    ],
)
async def test_bad_config_fails_before_any_model_call(
    config: dict[str, Any], agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    with pytest.raises(ConfigError):
        await agent(job(config, Reports()))
    assert await admin.requests() == []


# --- the turn loop ----------------------------------------------------------------------


async def test_finish_ends_the_node_with_its_output_and_usage(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    usage = {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128, "cached_tokens": 64}
    await admin.add_script(
        t,
        [{"tool_calls": [{"name": "finish", "arguments": {"output": "Otters."}}], "usage": usage}],
    )
    reports = Reports()
    out = await agent(
        job({"prompt": f"{t} about {{{{ input.topic }}}}", "system": "Be brief."}, reports)
    )
    assert out == {"text": "Otters.", "usage": usage, "model": "test-model", "turns": 1}

    [request] = await admin.requests(t)
    messages = request["body"]["messages"]
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith(SYSTEM_PREFIX)
    assert messages[0]["content"].endswith("Be brief.")
    assert messages[1]["content"].startswith(f"{t} about otters")
    assert "otters hold hands" in messages[1]["content"]  # the upstream output
    assert request["body"]["model"] == "test-model"
    assert [tool["function"]["name"] for tool in request["body"]["tools"]] == ["finish"]

    [called] = reports.model_calls
    assert called.payload.turn == 1 and called.payload.attempt == 1
    assert called.payload.node_id == "write" and called.payload.model == "test-model"
    assert called.payload.usage.model_dump() == usage
    assert called.payload.tool_calls == ["finish"]
    assert called.payload.finish_reason == "tool_calls"


async def test_finish_with_structured_output_keeps_it_and_its_json_text(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    value = {"verdict": "ok", "score": 3}
    await admin.add_script(
        t, [{"tool_calls": [{"name": "finish", "arguments": {"output": value}}]}]
    )
    out = await agent(job({"prompt": t}, Reports()))
    assert out["output"] == value
    assert json.loads(out["text"]) == value


async def test_a_plain_answer_ends_the_node_with_its_text(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, [{"content": "Otters are mustelids."}])
    reports = Reports()
    out = await agent(job({"prompt": t}, reports))
    assert out["text"] == "Otters are mustelids." and out["turns"] == 1
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] == 3
    assert [e.payload.tool_calls for e in reports.model_calls] == [[]]


async def test_a_tool_the_node_does_not_allow_is_refused_to_the_model(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(
        t,
        [
            {"tool_calls": [{"name": "patch_workflow", "arguments": {"patch": [], "reason": "r"}}]},
            {"tool_calls": [{"name": "finish", "arguments": "{not json"}]},
            {"tool_calls": [{"name": "finish", "arguments": {"output": "ok"}}]},
        ],
    )
    out = await agent(job({"prompt": t}, Reports()))  # patch_workflow not in config.tools
    assert out["text"] == "ok" and out["turns"] == 3
    requests = await admin.requests(t)
    assert [tool["function"]["name"] for tool in requests[0]["body"]["tools"]] == ["finish"]
    refused = requests[1]["body"]["messages"][-1]["content"]
    assert refused.startswith("error: there is no tool 'patch_workflow'")
    bad_json = requests[2]["body"]["messages"][-1]["content"]
    assert bad_json.startswith("error: the arguments of finish are not valid JSON")


async def test_not_finishing_within_max_turns_fails_the_node(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    # Malformed (no reason): answered with an error, so the model just goes on talking.
    again = {"tool_calls": [{"name": "patch_workflow", "arguments": {"patch": []}}]}
    await admin.add_script(t, [again] * 5)
    reports = Reports()
    with pytest.raises(NodeError) as caught:
        await agent(job({"prompt": t, "max_turns": 3, "tools": ["patch_workflow"]}, reports))
    assert not caught.value.retryable
    assert "max_turns=3" in str(caught.value)
    assert len(await admin.requests(t)) == 3
    assert len(reports.model_calls) == 3  # the tokens spent are still recorded


async def test_a_429_then_success_is_retried_honouring_retry_after(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(
        t,
        [
            {
                "status": 429,
                "headers": {"retry-after": "0.2"},
                "error": {"message": "slow down", "type": "rate_limit", "code": "rate_limited"},
            },
            {"tool_calls": [{"name": "finish", "arguments": {"output": "after the wait"}}]},
        ],
    )
    reports = Reports()
    out = await agent(job({"prompt": t}, reports))
    assert out["text"] == "after the wait" and out["turns"] == 1
    assert [r["status"] for r in await admin.requests(t)] == [429, 200]
    assert len(reports.model_calls) == 1  # only answered calls are reported


async def test_a_400_fails_the_node_with_the_models_message_without_retrying(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(
        t,
        [
            {
                "status": 400,
                "error": {
                    "message": "Invalid schema for function 'finish'",
                    "type": "invalid_request_error",
                },
            },
            {"content": "never reached"},
        ],
    )
    reports = Reports()
    with pytest.raises(NodeError) as caught:
        await agent(job({"prompt": t}, reports))
    assert not caught.value.retryable
    assert str(caught.value) == (
        "model test-model refused the request (400): Invalid schema for function 'finish'"
    )
    assert len(await admin.requests(t)) == 1
    assert reports.model_calls == []


async def test_retries_exhausted_fail_the_node_retryably(
    scripted: Running, admin: ScriptedLLMClient
) -> None:
    t = token()
    busy = {"status": 503, "headers": {"retry-after": "0"}, "error": {"message": "overloaded"}}
    await admin.add_script(t, [busy] * 3)
    async with AsyncOpenAI(base_url=scripted.base_url, api_key="k", max_retries=0) as client:
        handler = AgentHandler(
            client, default_model="m", verdicts=NoVerdicts(), retry=RetryPolicy(max_tries=3)
        )
        with pytest.raises(NodeError) as caught:
            await handler(job({"prompt": t}, Reports()))
    assert caught.value.retryable and "overloaded" in str(caught.value)
    assert len(await admin.requests(t)) == 3


async def test_an_attempt_delivered_twice_reports_the_same_event_ids(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    reply = {"tool_calls": [{"name": "finish", "arguments": {"output": "x"}}]}
    await admin.add_script(t, [reply, reply])
    first, second = Reports(), Reports()
    await agent(job({"prompt": t}, first))
    await agent(job({"prompt": t}, second))
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    third = Reports()
    await agent(job({"prompt": t}, third, attempt=2))  # default reply: the script is used up
    assert third.events[0].event_id != first.events[0].event_id


async def test_the_default_reply_finishes_any_prompt_and_says_it_is_scripted(
    agent: AgentHandler,
) -> None:
    out = await agent(job({"prompt": f"Summarise {token()} for the board"}, Reports()))
    assert out["text"].startswith(SCRIPTED_MARK)
    assert "Summarise" in out["text"]
    assert out["usage"]["prompt_tokens"] > 0


async def test_the_scripted_model_counts_a_repeated_system_prefix_as_cached(
    agent: AgentHandler,
) -> None:
    first, second = (
        await agent(job({"prompt": "a"}, Reports())),
        await agent(job({"prompt": "b"}, Reports(), run_id="run-2")),
    )
    assert first["usage"]["cached_tokens"] == 0
    assert second["usage"]["cached_tokens"] == len(SYSTEM_PREFIX.split())


# --- values the model makes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ('{"output": "a\\u0000b"}', "output: a string contains a NUL character"),
        ('{"output": {"s": "\\udc00"}}', "output.s: a string contains a lone surrogate"),
        ('{"output": ' + "[" * 2000 + "]" * 2000 + "}", "the arguments: the JSON nests deeper"),
        ('{"output": ' + "[" * 100 + "]" * 100 + "}", "nests deeper than 64 levels"),
        ('{"output": 1, "output": 2}', 'the key "output" appears twice'),
        ('{"output": NaN}', "NaN is not a JSON number"),
        ('{"output": {"n": 1e400}}', "output.n: numbers must be finite"),
    ],
)
def test_finish_arguments_that_break_the_value_rules_are_refused_to_the_model(
    arguments: str, words: str
) -> None:
    answered = answer("finish", arguments, ())
    assert not answered.finished and answered.output is None
    assert answered.reply.startswith("error: the arguments of finish were refused")
    assert words in answered.reply
    assert answered.reply.endswith("Call finish again with corrected arguments.")


def test_a_patch_whose_reason_breaks_the_value_rules_is_not_submitted() -> None:
    answered = answer(
        "patch_workflow", '{"patch": [], "reason": "why\\u0000"}', ("patch_workflow",)
    )
    assert answered.patch is None
    assert "reason: a string contains a NUL character" in answered.reply


def test_a_tool_name_the_model_made_up_is_carried_as_a_short_writable_word() -> None:
    call = SimpleNamespace(function=SimpleNamespace(name="fin\x00ish\ud800" * 100))
    name = tool_name(call)
    assert "\x00" not in name and "\ud800" not in name
    assert len(name) == MAX_NAME_CHARS and name.startswith("fin\ufffdish\ufffd")


async def test_the_model_is_told_what_broke_the_rules_and_finishes_after_correcting(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(
        t,
        [
            {"tool_calls": [{"name": "fin\x00ish", "arguments": {"output": "x"}}]},
            {"tool_calls": [{"name": "finish", "arguments": '{"output": {"a": "b\\u0000"}}'}]},
            {"tool_calls": [{"name": "finish", "arguments": {"output": {"a": "b"}}}]},
        ],
    )
    reports = Reports()
    out = await agent(job({"prompt": t}, reports))
    assert out["output"] == {"a": "b"} and out["turns"] == 3
    requests = await admin.requests(t)
    refused = requests[2]["body"]["messages"][-1]["content"]
    assert refused.startswith("error: the arguments of finish were refused")
    assert "output.a: a string contains a NUL character" in refused
    names = [e.payload.tool_calls for e in reports.model_calls]
    assert names == [["fin\ufffdish"], ["finish"], ["finish"]]
