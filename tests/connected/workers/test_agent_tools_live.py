"""Agent tools through the running system: an agent (the scripted model, scripted by turn)
calls the http tool against the loopback target, the tools of an MCP server this test
serves on loopback (both through the workers' guard and allowlist) and registered node
types (served in this process on the workers' runtime, or by a worker of the SDK); every
call is a ``run.tool_called`` in the timeline and in GraphQL. The workers killed (SIGKILL)
after the first call answered: the attempt's task comes back, and that call is not made
again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from mcp.server.fastmcp import FastMCP

from cas.store import ContentStore
from infra.bus import EventBus
from infra.scripted_llm.client import ScriptedLLMClient
from infra.settings import Settings
from infra.stack.errors import StackError
from infra.stack.process import ensure_running, log_file, pid_alive
from tests.connected.conftest import LIVE_MCP_TARGET
from tests.connected.live import pid_of, spec_of
from tests.helpers import eventually, stop_process
from tests.http_support import LoopbackServer
from workers.execute import TaskExecutor
from workers.handlers import Job
from workers.runtime import serve

pytestmark = [pytest.mark.connected, pytest.mark.timeout(300)]

QUERY = """
query Run($id: ID!) {
  run(id: $id) {
    status error
    spend { tokens toolCalls }
    nodes(first: 5) { id status attempts output error toolCallCount
            toolCalls(first: 20) { callId tool attempt ok error durationMs } }
    events(first: 200) { edges { node { type payload } } }
  }
}
"""


class McpTarget:
    """A FastMCP server (streamable HTTP) on loopback: ``lookup`` answers at once, ``gate``
    waits until the test opens it. Counts the calls of each tool."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.calls: Counter[str] = Counter()
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.server = FastMCP("aob-test-tools", host=host, port=port)

        @self.server.tool(description="The value kept under a key.")
        def lookup(key: str) -> dict[str, Any]:
            self.calls["lookup"] += 1
            return {"key": key, "value": len(key)}

        @self.server.tool(description="Waits until the gate is opened.")
        async def gate(token: str) -> str:
            self.calls["gate"] += 1
            self.entered.set()
            await asyncio.to_thread(self.opened.wait, 120)
            return f"open for {token}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    @contextlib.contextmanager
    def running(self) -> Iterator[McpTarget]:
        config = uvicorn.Config(
            self.server.streamable_http_app(), host=self.host, port=self.port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "MCP server did not start"
            time.sleep(0.05)
        try:
            yield self
        finally:
            self.opened.set()
            server.should_exit = True
            thread.join(15)


@pytest.fixture
def mcp_target(services: Settings) -> Iterator[McpTarget]:
    allowed = os.environ.get("AOB_HTTP_ALLOWLIST", "")
    target = "{}:{}".format(*LIVE_MCP_TARGET)
    assert target in allowed.split(","), (
        f"the stack's workers must allow {target}: start it with AOB_HTTP_ALLOWLIST "
        f"including {target} (make test does)"
    )
    with McpTarget(*LIVE_MCP_TARGET).running() as server:
        yield server


class Api:
    def __init__(self, rest: httpx.AsyncClient, gql: httpx.AsyncClient) -> None:
        self.rest, self.gql = rest, gql

    async def run(self, name: str, agent: dict[str, Any]) -> str:
        definition = {"nodes": [agent], "edges": []}
        published = await self.rest.post(
            "/v1/workflows", json={"name": name, "definition": definition}
        )
        assert published.status_code == 201, published.text
        submitted = await self.rest.post("/v1/runs", json={"workflow_id": name, "input": {}})
        assert submitted.status_code == 202, submitted.text
        return str(submitted.json()["run_id"])

    async def read(self, run_id: str) -> dict[str, Any]:
        response = await self.gql.post(
            "/graphql", json={"query": QUERY, "variables": {"id": run_id}}
        )
        body = response.json()
        assert body.get("data") is not None, body
        run = body["data"]["run"]
        assert run is not None, "the read side has no such run yet"
        return dict(run)

    async def finished(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        async def done() -> dict[str, Any]:
            run = await self.read(run_id)
            assert run["status"] in {"COMPLETED", "FAILED"}, run["status"]
            calls = [e for e in events(run) if e["type"] == "run.tool_called"]
            assert len(calls) >= run["spend"]["toolCalls"], "the read side is catching up"
            return run

        return await eventually(done, timeout=timeout)


@pytest.fixture
async def api(services: Settings, api_key: str) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        yield Api(rest, gql)


def events(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["node"] for e in run["events"]["edges"]]


def tool_events(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["payload"] for e in events(run) if e["type"] == "run.tool_called"]


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def agent_node(token: str, mcp: McpTarget, **extra: Any) -> dict[str, Any]:
    return {
        "id": "ask",
        "type": "agent",
        "config": {
            "prompt": f"Look things up for {token}",
            "max_turns": 6,
            "tools": ["http", {"mcp": {"url": mcp.url, "name": "kb", "tools": ["lookup", "gate"]}}],
        },
        **extra,
    }


async def kill_workers(services: Settings, *, then: Any) -> None:
    """SIGKILL the stack's workers, call ``then`` once they are gone, and start them again
    (whatever happened: the next test needs them)."""
    spec = spec_of(services, "workers")
    pid = pid_of(services, "workers")
    assert pid is not None

    async def restarted() -> None:
        try:
            await ensure_running(services, spec)
        except StackError as e:  # shown with the log's last lines, and tried again
            lines = log_file(services, "workers").read_text(errors="replace").splitlines()
            print(f"{e}; the log ends:", *lines[-40:], sep="\n")
            raise AssertionError(str(e)) from e
        again = pid_of(services, "workers")
        assert again is not None and again != pid, "the workers were not started again"

    os.kill(pid, signal.SIGKILL)
    try:
        await eventually(lambda: not pid_alive(pid), timeout=60, interval=0.05)
        then()
    finally:
        await eventually(restarted, timeout=120, interval=1.0)


def requests_for(target: LoopbackServer, token: str) -> int:
    return sum(1 for seen in target.seen if token in seen.path)


async def test_an_agent_calls_an_http_tool_and_an_mcp_tool_and_both_are_in_the_timeline(
    api: Api, scripted: ScriptedLLMClient, live_http_target: LoopbackServer, mcp_target: McpTarget
) -> None:
    token = uuid.uuid4().hex
    url = f"{live_http_target.base}/json?token={token}"
    await scripted.add_script(
        token,
        [
            call("http", {"url": url}),
            call("kb__lookup", {"key": token}),
            call("finish", {"output": f"looked up {token}"}),
        ],
        by_turn=True,
    )
    run_id = await api.run(f"tools-{token[:12]}", agent_node(token, mcp_target))
    run = await api.finished(run_id)

    assert run["status"] == "COMPLETED", run
    (node,) = run["nodes"]
    assert node["output"]["text"] == f"looked up {token}"
    assert requests_for(live_http_target, token) == 1
    assert mcp_target.calls["lookup"] == 1
    called = tool_events(run)
    assert [(c["tool"], c["ok"]) for c in called] == [("http", True), ("kb__lookup", True)]
    assert called[0]["result"]["status"] == 200
    assert called[1]["result"] == {"key": token, "value": len(token)}
    assert [(c["tool"], c["ok"]) for c in node["toolCalls"]] == [
        ("http", True),
        ("kb__lookup", True),
    ]
    assert node["toolCallCount"] == 2 and run["spend"]["toolCalls"] == 2
    # The model was offered the MCP tools it may call, under the server's name.
    first = (await scripted.requests(token))[0]["body"]
    offered = [t["function"]["name"] for t in first["tools"]]
    assert offered == ["finish", "http", "kb__gate", "kb__lookup"]


async def test_an_mcp_server_the_guard_refuses_fails_the_node_with_the_reason(
    api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    node = {
        "id": "ask",
        "type": "agent",
        "config": {
            "prompt": f"Look things up for {token}",
            # Loopback, but not in the allowlist: refused before any connection is made.
            "tools": [{"mcp": {"url": "http://127.0.0.1:9/mcp", "name": "kb"}}],
        },
    }
    run_id = await api.run(f"refused-{token[:12]}", node)
    run = await api.finished(run_id)
    assert run["status"] == "FAILED"
    assert "MCP server 'kb'" in run["nodes"][0]["error"]
    assert "refused: 127.0.0.1 is a loopback address" in run["nodes"][0]["error"]
    assert await scripted.requests(token) == []  # no model call without the tools


async def test_a_call_that_answered_is_not_made_again_after_the_workers_are_killed(
    services: Settings,
    api: Api,
    scripted: ScriptedLLMClient,
    live_http_target: LoopbackServer,
    mcp_target: McpTarget,
) -> None:
    token = uuid.uuid4().hex
    url = f"{live_http_target.base}/json?token={token}"
    await scripted.add_script(
        token,
        [
            call("http", {"url": url}),
            call("kb__gate", {"token": token}),
            call("finish", {"output": f"through {token}"}),
        ],
        by_turn=True,
    )
    # Time enough for the killed attempt's task to come back to the restarted workers.
    run_id = await api.run(f"crash-{token[:12]}", agent_node(token, mcp_target, timeout_s=240))

    # The gate is entered only after the http call answered and was recorded.
    assert await asyncio.to_thread(mcp_target.entered.wait, 90), "the agent never got to the gate"
    assert requests_for(live_http_target, token) == 1
    await kill_workers(services, then=mcp_target.opened.set)

    run = await api.finished(run_id, timeout=240)
    assert run["status"] == "COMPLETED", run
    assert run["nodes"][0]["output"]["text"] == f"through {token}"
    # The http call answered before the kill: it was not made again.
    assert requests_for(live_http_target, token) == 1
    assert mcp_target.calls["gate"] == 2  # the first never answered: it was made again
    called = tool_events(run)
    assert [c["tool"] for c in called if c["tool"] == "http"] == ["http"]
    assert [(c["tool"], c["ok"]) for c in run["nodes"][0]["toolCalls"]] == [
        ("http", True),
        ("kb__gate", True),
    ]
    assert run["spend"]["toolCalls"] == 2


@contextlib.asynccontextmanager
async def custom_worker(services: Settings, name: str, handler: Any) -> AsyncIterator[None]:
    """A worker of the tenant's own serving the node type ``name`` with ``handler``, run in
    this process on the workers' own runtime (as a worker of the SDK does)."""
    bus = EventBus(services.kafka_bootstrap, client_id=f"aob-test-{name}")
    await bus.start()
    stop = asyncio.Event()
    executor = TaskExecutor(
        events=bus,
        store=ContentStore.from_settings(services),
        handlers={name: handler},
        worker_name=f"test-{name}",
        tasks=bus,
    )
    serving = asyncio.create_task(
        serve(
            [name],
            bootstrap=services.kafka_bootstrap,
            executor=executor,
            dead_letters=bus,
            stop=stop,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(serving, 60)
        await bus.stop()


async def test_an_agent_calls_a_registered_node_type_and_an_http_tool_in_one_attempt(
    services: Settings, api: Api, scripted: ScriptedLLMClient, live_http_target: LoopbackServer
) -> None:
    token = uuid.uuid4().hex
    name = f"shout-{token[:12]}"
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    registered = await api.rest.put(
        f"/v1/node-types/{name}",
        json={"config_schema": schema, "output_schema": None, "description": "Shouts."},
    )
    assert registered.status_code == 200, registered.text
    shouted: list[dict[str, Any]] = []

    async def shout(job: Job) -> dict[str, Any]:
        shouted.append(job.config)
        return {"text": str(job.config["text"]).upper()}

    url = f"{live_http_target.base}/json?token={token}"
    await scripted.add_script(
        token,
        [
            call("http", {"url": url}),
            call(name, {"text": f"hello {token}"}),
            call("finish", {"output": "shouted"}),
        ],
        by_turn=True,
    )
    node = {
        "id": "ask",
        "type": "agent",
        "config": {"prompt": f"Shout for {token}", "tools": ["http", name]},
    }
    async with custom_worker(services, name, shout):
        run_id = await api.run(f"typed-{token[:12]}", node)
        run = await api.finished(run_id)

    assert run["status"] == "COMPLETED", run
    assert shouted == [{"text": f"hello {token}"}]
    assert requests_for(live_http_target, token) == 1
    called = tool_events(run)
    assert [(c["tool"], c["ok"]) for c in called] == [("http", True), (name, True)]
    assert called[1]["result"] == {"text": f"HELLO {token.upper()}"}
    assert called[1]["attempt"] == 1 and called[1]["node_id"] == "ask"
    assert run["nodes"][0]["toolCallCount"] == 2 and run["spend"]["toolCalls"] == 2
    offered = (await scripted.requests(token))[0]["body"]["tools"]
    assert offered[2]["function"] == {"name": name, "description": "Shouts.", "parameters": schema}


async def test_a_registered_type_call_that_answered_is_not_made_again_after_a_kill(
    services: Settings, api: Api, scripted: ScriptedLLMClient, mcp_target: McpTarget
) -> None:
    token = uuid.uuid4().hex
    name = f"count-{token[:12]}"
    registered = await api.rest.put(f"/v1/node-types/{name}", json={"description": "Counts."})
    assert registered.status_code == 200, registered.text
    counted: list[dict[str, Any]] = []

    async def count(job: Job) -> dict[str, Any]:
        counted.append(job.config)
        return {"n": len(counted)}

    await scripted.add_script(
        token,
        [
            call(name, {"what": token}),
            call("kb__gate", {"token": token}),
            call("finish", {"output": "counted"}),
        ],
        by_turn=True,
    )
    node = agent_node(token, mcp_target, timeout_s=240)
    node["config"]["tools"] = [name, *node["config"]["tools"]]
    async with custom_worker(services, name, count):
        run_id = await api.run(f"count-{token[:12]}", node)
        assert await asyncio.to_thread(mcp_target.entered.wait, 90), "never got to the gate"
        assert len(counted) == 1
        await kill_workers(services, then=mcp_target.opened.set)
        run = await api.finished(run_id, timeout=240)

    assert run["status"] == "COMPLETED", run
    assert counted == [{"what": token}]  # answered before the kill: not made again
    assert mcp_target.calls["gate"] == 2
    assert [(c["tool"], c["ok"]) for c in run["nodes"][0]["toolCalls"]] == [
        (name, True),
        ("kb__gate", True),
    ]


SDK_MODULE = '''
"""A user's node type, served by the worker SDK: an agent calls it as a tool."""

from pydantic import BaseModel

from aob import Job, node


class ShoutConfig(BaseModel):
    text: str


@node("{name}", config=ShoutConfig, description="Shouts its text.")
async def shout(job: Job[ShoutConfig]) -> dict:
    return {{"text": job.config.text.upper(), "key": job.idempotency_key}}
'''


@contextlib.contextmanager
def sdk_worker(path: Path, name: str, api_key: str) -> Iterator[None]:
    """``python -m aob.worker shout_tool.py`` in a folder of its own, once it serves."""
    (path / "shout_tool.py").write_text(SDK_MODULE.format(name=name))
    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "AOB_API_KEY": api_key,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "sdk")]),
    }
    log_path = path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aob.worker", "shout_tool.py"],
            cwd=path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while b"serving" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"the worker did not start:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield
    finally:
        stop_process(proc, grace_s=30)


async def test_an_agent_calls_a_node_type_served_by_an_sdk_worker(
    api: Api, api_key: str, scripted: ScriptedLLMClient, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    name = f"yell-{token[:12]}"
    await scripted.add_script(
        token,
        [call(name, {"text": f"hi {token}"}), call("finish", {"output": "yelled"})],
        by_turn=True,
    )
    node = {"id": "ask", "type": "agent", "config": {"prompt": f"Yell {token}", "tools": [name]}}
    with sdk_worker(tmp_path, name, api_key):
        run_id = await api.run(f"yell-{token[:12]}", node)
        run = await api.finished(run_id)
    assert run["status"] == "COMPLETED", run
    (called,) = tool_events(run)
    assert called["tool"] == name and called["ok"], called
    assert called["result"]["text"] == f"HI {token.upper()}"
    assert called["result"]["key"] == f"{run_id}/ask/{called['call_id']}"
