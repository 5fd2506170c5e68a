"""Agent tools on the worker's side, against the scripted model served in this process: what
is offered, one ``run.tool_called`` per call, a call that answered never made again (a
retried attempt, a task delivered again), failures as answers, and the SSRF guard in front
of the http tool and of the MCP client (refusals checked without any connection)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.scripts import ScriptBook, ScriptIn
from infra.scripted_llm.serve import Running
from run_model.testing import tool_called
from schemas.agent_tools import McpServer, ToolCallRecord, call_id
from schemas.envelope import Event
from schemas.events import ModelCalled, NodeStarted, NodeSucceeded, ToolCalled
from schemas.tasks import NodeTask
from tests.http_support import MapResolver
from tests.worker_support import RunLog
from workers.agent.calls import RetryPolicy
from workers.agent.handler import AgentHandler
from workers.agent.mcp_tools import McpConnector, McpSessions
from workers.agent.node_tools import ResultQuery
from workers.agent.toolbox import HTTP_DEFINITION, ToolServices
from workers.agent.verdicts import Verdict, VerdictQuery
from workers.errors import ConfigError
from workers.execute import TaskExecutor
from workers.handlers import Job
from workers.http import Guard, HttpHandler
from workers.http.transport import PinnedTransport


class NoVerdicts:
    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        raise AssertionError(f"no patch was expected here, got {query}")


class FakeHttp:
    """The http tool's handler, answering from a table and counting what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.keys: list[str] = []

    async def request(
        self, config: dict[str, Any], key: str, time_limit_s: float | None = None
    ) -> dict[str, Any]:
        self.asked.append(config)
        self.keys.append(key)
        return {"status": 200, "headers": {}, "body": {"echo": config["url"]}}


class History:
    """This attempt's calls as the run's log holds them (a task delivered again)."""

    def __init__(self, records: list[ToolCallRecord] | None = None) -> None:
        self.records = records or []
        self.asked = 0

    async def calls(self, task: NodeTask, /) -> list[ToolCallRecord]:
        self.asked += 1
        return list(self.records)


class Reports:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


def task(prompt: str, tools: list[Any], attempt: int = 1, **kw: Any) -> NodeTask:
    return NodeTask(
        task_id=f"task-{attempt}-{prompt}",
        run_id="run-1",
        tenant="acme",
        node_id="write",
        node_type="agent",
        attempt=attempt,
        config={"prompt": prompt, "tools": tools},
        timeout_s=30,
        **kw,
    )


@pytest.fixture
async def client(scripted: Running) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=scripted.base_url, api_key="test", max_retries=0) as c:
        yield c


def agent(client: AsyncOpenAI, services: ToolServices) -> AgentHandler:
    return AgentHandler(
        client,
        default_model="test-model",
        verdicts=NoVerdicts(),
        retry=RetryPolicy(first_delay_s=0.01),
        tools=services,
    )


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": n, "arguments": a} for n, a in tool_calls]}


FINISH = calls(("finish", {"output": "done"}))
GET_A = ("http", {"url": "http://a.example/x"})


async def test_the_http_tool_is_offered_after_finish_and_each_call_is_recorded(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok, http, reports = token(), FakeHttp(), Reports()
    await admin.add_script(tok, [calls(GET_A), calls(GET_A), FINISH])
    t = task(tok, ["http"])
    out = await agent(client, ToolServices(http=http))(
        Job(t, {"input": None, "nodes": {}}, reports)
    )  # type: ignore[arg-type]
    assert out["text"] == "done" and out["turns"] == 3
    first = (await admin.requests(tok))[0]["body"]
    assert [d["function"]["name"] for d in first["tools"]] == ["finish", "http"]
    assert first["tools"][1] == HTTP_DEFINITION
    # The same call twice is two calls (ordinals 0 and 1), each with its own id and key.
    assert http.asked == [GET_A[1], GET_A[1]]
    recorded = reports.of(ToolCalled)
    ids = [call_id("run-1", "write", "http", GET_A[1], n) for n in (0, 1)]
    assert [e.payload.call_id for e in recorded] == ids
    assert http.keys == [f"run-1/write/{i}" for i in ids]
    assert all(e.payload.ok and e.payload.attempt == 1 for e in recorded)
    assert recorded[0].payload.result["body"] == {"echo": "http://a.example/x"}
    # The model read the result as the tool's answer.
    second = (await admin.requests(tok))[1]["body"]["messages"]
    assert json.loads(second[-1]["content"])["status"] == 200


async def test_a_retried_attempt_reuses_a_call_that_answered_and_makes_the_rest(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok, http, reports = token(), FakeHttp(), Reports()
    other = ("http", {"url": "http://b.example/"})
    await admin.add_script(tok, [calls(GET_A), calls(other), FINISH], by_turn=True)
    earlier = tool_called(task(tok, ["http"]), *GET_A, result={"status": 201, "body": "kept"})
    done = ToolCallRecord(**{**earlier.payload.model_dump(), "attempt": 1})
    t = task(tok, ["http"], attempt=2, tool_calls=[done])
    out = await agent(client, ToolServices(http=http, history=History()))(
        Job(t, {"input": None, "nodes": {}}, reports)  # type: ignore[arg-type]
    )
    assert out["text"] == "done"
    assert http.asked == [other[1]]  # GET_A answered in attempt 1: not made again
    assert [e.payload.tool for e in reports.of(ToolCalled)] == ["http"]
    assert reports.of(ToolCalled)[0].payload.attempt == 2
    messages = (await admin.requests(tok))[1]["body"]["messages"]
    assert json.loads(messages[-1]["content"]) == {"status": 201, "body": "kept"}


async def test_a_task_delivered_again_finds_its_own_calls_in_the_log(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok, http, reports = token(), FakeHttp(), Reports()
    await admin.add_script(tok, [calls(GET_A, GET_A), FINISH], by_turn=True)
    t = task(tok, ["http"])
    logged = tool_called(t, *GET_A, result="first")  # ordinal 0 answered before the crash
    history = History([ToolCallRecord(**logged.payload.model_dump())])
    await agent(client, ToolServices(http=http, history=history))(
        Job(t, {"input": None, "nodes": {}}, reports)  # type: ignore[arg-type]
    )
    assert history.asked == 1  # read once, at the first call
    assert len(http.asked) == 1  # ordinal 1 only
    assert [e.payload.call_id for e in reports.of(ToolCalled)] == [
        call_id("run-1", "write", "http", GET_A[1], 1)
    ]


async def test_a_failed_call_is_an_answer_to_the_model_not_a_failed_node(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok, reports = token(), Reports()
    refused = ("http", {"url": "http://10.0.0.5/admin"})
    await admin.add_script(tok, [calls(refused), FINISH])
    http = HttpHandler(
        httpx.AsyncClient(transport=PinnedTransport(Guard(MapResolver({})))),
        max_response_bytes=1000,
    )
    out = await agent(client, ToolServices(http=http))(
        Job(task(tok, ["http"]), {"input": None, "nodes": {}}, reports)  # type: ignore[arg-type]
    )
    assert out["text"] == "done"
    (event,) = reports.of(ToolCalled)
    assert not event.payload.ok and event.payload.result is None
    assert event.payload.error == "refused: 10.0.0.5 is a private address, not a public one"
    messages = (await admin.requests(tok))[1]["body"]["messages"]
    assert messages[-1]["content"] == f"error: {event.payload.error}"


class Recording:
    """Inner transports of the pinned transport that note every request reaching them."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def factory(self) -> httpx.AsyncBaseTransport:
        return httpx.MockTransport(lambda r: self.requests.append(r) or httpx.Response(500))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://192.168.0.1/",
        "http://127.0.0.1:1/",
        "http://localhost/",
        "http://metadata.google.internal/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
async def test_the_http_tool_refuses_what_the_http_node_refuses_before_any_connection(
    url: str,
) -> None:
    seen = Recording()
    guarded = httpx.AsyncClient(transport=PinnedTransport(Guard(MapResolver({})), seen.factory))
    http = HttpHandler(guarded, max_response_bytes=1000)
    with pytest.raises(Exception, match="refused") as e:
        await http.request({"url": url}, "key", 5.0)
    assert type(e.value).__name__ == "Refused"
    assert seen.requests == []


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/mcp", "http://169.254.169.254/mcp", "https://[fd00::1]/mcp"]
)
async def test_the_mcp_client_connects_through_the_guard_and_is_refused_without_a_connection(
    url: str,
) -> None:
    seen = Recording()
    guarded = httpx.AsyncClient(transport=PinnedTransport(Guard(MapResolver({})), seen.factory))
    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError, match=r"MCP server 'docs' .*refused: .* not a public"):
            await McpSessions.open(
                McpConnector(guarded),
                (McpServer("docs", url, None),),
                stack,
                deadline=1e12,
            )
    assert seen.requests == []


async def test_the_worker_gives_the_mcp_client_the_http_nodes_guarded_client() -> None:
    from workers.builtins import open_agent
    from workers.http.client import open_http_handler
    from workers.settings import WorkerSettings

    # The two handlers alone: the whole set would also open the wait_event node's
    # PostgreSQL pool, and this lane has no server.
    async with AsyncExitStack() as stack:
        settings = WorkerSettings()
        http = await open_http_handler(settings, stack)
        agent_handler = await open_agent(settings, stack, http)
        assert isinstance(http, HttpHandler) and isinstance(agent_handler, AgentHandler)
        services = agent_handler._tool_services
        assert services.http is http
        assert services.mcp is not None and services.mcp.client is http.client
        assert isinstance(http.client._transport, PinnedTransport)


# --- registered node types as tools --------------------------------------------------------


class Results:
    """The node type's worker, in memory: it answers each tool task it is sent."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.sent: list[NodeTask] = []

    async def send(self, t: NodeTask) -> None:
        self.sent.append(t)

    async def wait(self, query: ResultQuery, /) -> ToolCalled | None:
        if self.answer is None:
            return None
        sent = self.sent[-1]
        origin = sent.tool_call
        assert origin is not None and origin.call_id == query.call_id
        return tool_called(
            task("x", []).model_copy(update={"attempt": origin.attempt}),
            origin.tool,
            sent.config,
            result=self.answer,
        )


async def test_a_registered_type_is_offered_with_its_schema_and_called_through_its_workers(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok, reports = token(), Reports()
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    types = {"shout": {"config_schema": schema, "output_schema": None, "description": "LOUD"}}
    await admin.add_script(tok, [calls(("shout", {"text": "hi"})), FINISH])
    results = Results({"text": "HI"})
    t = task(tok, ["shout"], tool_types=types)
    job = Job(t, {"input": None, "nodes": {}}, reports, send_task=results.send)  # type: ignore[arg-type]
    await agent(client, ToolServices(results=results))(job)
    offered = (await admin.requests(tok))[0]["body"]["tools"]
    assert offered[1]["function"] == {"name": "shout", "description": "LOUD", "parameters": schema}
    (sent,) = results.sent
    assert sent.node_type == "shout" and sent.config == {"text": "hi"}
    assert sent.tool_call is not None and sent.tool_call.agent_task_id == t.task_id
    assert sent.idempotency_key == f"run-1/write/{sent.tool_call.call_id}"
    assert reports.of(ToolCalled) == []  # the type's worker records the call, not the agent
    messages = (await admin.requests(tok))[1]["body"]["messages"]
    assert json.loads(messages[-1]["content"]) == {"text": "HI"}


async def test_a_type_the_run_does_not_know_fails_the_node_before_any_model_call(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    tok = token()
    with pytest.raises(ConfigError, match="node types that the run does not know"):
        await agent(client, ToolServices(results=Results(None)))(
            Job(task(tok, ["shout"]), {"input": None, "nodes": {}}, Reports(), send_task=print)  # type: ignore[arg-type]
        )
    assert await admin.requests(tok) == []


async def test_the_executor_answers_a_tool_task_with_run_tool_called_not_a_node_outcome() -> None:
    log = RunLog()

    async def shout(job: Job) -> Any:
        assert job.context == {"input": None, "nodes": {}}
        return {"text": job.config["text"].upper()}

    async def broken(job: Job) -> Any:
        raise ValueError("no voice")

    executor = TaskExecutor(
        events=log,
        store=None,
        handlers={"shout": shout, "mute": broken},
        worker_name="w",  # type: ignore[arg-type]
    )
    agent_task = task("p", ["shout"])
    for name, key in (("shout", "a"), ("mute", "b"), ("shout", "c")):
        origin = {
            "call_id": f"call-{key}",
            "node_id": "write",
            "attempt": 1,
            "agent_task_id": agent_task.task_id,
            "tool": name,
        }
        config = {"text": "hi"} if key != "c" else {"text": "{{ secrets.KEY }}"}
        await executor.run(
            NodeTask(
                task_id=f"tool-{key}",
                run_id="run-1",
                tenant="acme",
                node_id="write",
                node_type=name,
                attempt=1,
                config=config,
                tool_call=origin,  # type: ignore[arg-type]
            )
        )
    assert not [e for e in log.events if isinstance(e, NodeStarted | NodeSucceeded | ModelCalled)]
    ok, failed, secret = (e.payload for e in log.events)
    assert (ok.call_id, ok.ok, ok.result, ok.node_id) == ("call-a", True, {"text": "HI"}, "write")
    assert (failed.ok, failed.error) == (False, "unexpected ValueError: no voice")
    assert not secret.ok and "may not read secrets" in (secret.error or "")


# --- the scripted model -------------------------------------------------------------------------


def test_a_script_by_turn_gives_a_conversation_started_again_the_same_replies() -> None:
    book = ScriptBook()
    book.add(
        ScriptIn.model_validate(
            {"match": "tok", "by_turn": True, "replies": [{"content": "one"}, {"content": "two"}]}
        )
    )
    first = {"messages": [{"role": "user", "content": "tok"}]}
    second = {"messages": [*first["messages"], {"role": "assistant", "content": "one"}]}
    third = {"messages": [*second["messages"], {"role": "assistant", "content": "two"}]}
    answers = [book.take(body)[1] for body in (first, second, first, second, third)]
    assert [a.content if a else None for a in answers] == ["one", "two", "one", "two", None]
