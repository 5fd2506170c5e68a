"""Agents patching their own run, through the running system that ``aob up`` started: REST ->
coordinator -> the agent worker -> the scripted model (its replies scripted per test) -> the
agent's PatchSubmitted -> the coordinator's verdict -> the agent's next turn -> the read side.

The http node an agent adds calls a loopback target that the test stack's workers are allowed
to reach (``LIVE_HTTP_TARGET``, put in ``AOB_HTTP_ALLOWLIST`` when the stack starts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.scripted_llm.client import ScriptedLLMClient
from infra.settings import Settings
from schemas.workflow import PATCH_TOOL
from tests.connected.run_client import RunClient, http_clients
from tests.http_support import LoopbackServer

pytestmark = pytest.mark.connected

QUERY = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) { id status error nodes { id type status output error } }
}
"""


def planner(token: str) -> dict[str, Any]:
    """``start`` -> ``plan``, an agent that may patch the run (its prompt names ``token``)."""
    return {
        "nodes": [
            {"id": "start", "type": "transform", "config": {"output": {"n": 3}}},
            {
                "id": "plan",
                "type": "agent",
                "timeout_s": 60,
                "config": {"prompt": f"Plan {token}", "max_turns": 4, "tools": [PATCH_TOOL]},
            },
        ],
        "edges": [{"from": "start", "to": "plan"}],
    }


def add_node(node: dict[str, Any], after: str = "plan") -> list[dict[str, Any]]:
    return [
        {"op": "add", "path": "/nodes/-", "value": node},
        {"op": "add", "path": "/edges/-", "value": {"from": after, "to": node["id"]}},
    ]


def patch_call(patch: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": PATCH_TOOL, "arguments": {"patch": patch, "reason": reason}}]}


def finish(output: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "finish", "arguments": {"output": output}}]}


class Api(RunClient):
    async def started(self, name: str, definition: dict[str, Any]) -> str:
        run_id, _ = await self.submit(name, definition, {})
        return run_id

    async def finished(self, run_id: str) -> dict[str, Any]:
        def done(run: dict[str, Any]) -> None:
            assert run["status"] in {"COMPLETED", "FAILED"}, run

        return await self.until(run_id, done, timeout=120)


@pytest.fixture
async def api(services: Settings, api_key: str) -> AsyncIterator[Api]:
    async with http_clients(services, api_key) as (rest, gql):
        yield Api(rest, gql, QUERY)


def nodes_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in run["nodes"]}


def tool_answer(request: dict[str, Any]) -> str:
    message = request["body"]["messages"][-1]
    assert message["role"] == "tool", message
    return str(message["content"])


async def test_an_agent_adds_an_http_node_after_itself_and_the_node_runs(
    api: Api, scripted: ScriptedLLMClient, live_http_target: LoopbackServer
) -> None:
    token = uuid.uuid4().hex
    post = {
        "id": "post",
        "type": "http",
        "config": {
            "method": "POST",
            "url": f"{live_http_target.base}/echo",
            "body": {"plan": "{{ nodes.plan.output.text }}"},
        },
    }
    await scripted.add_script(
        token,
        [patch_call(add_node(post), "post the plan"), finish(f"planned {token}")],
    )
    run = await api.finished(await api.started(f"patch-{token}", planner(token)))

    assert run["status"] == "COMPLETED", run
    nodes = nodes_of(run)
    assert nodes["plan"]["status"] == "SUCCEEDED"
    assert nodes["post"]["status"] == "SUCCEEDED", nodes
    assert nodes["post"]["output"]["status"] == 200
    (seen,) = [r for r in live_http_target.seen if token in r.body.decode()]
    assert (seen.method, seen.path) == ("POST", "/echo")
    assert json.loads(seen.body) == {"plan": f"planned {token}"}
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["idempotency-key"] == f"{run['id']}/post/1"

    first, second = await scripted.requests(token)
    user = first["body"]["messages"][1]["content"]
    assert "This run's workflow definition, version " in user
    assert f'"prompt":"Plan {token}"' in user  # the definition, compact
    answer = tool_answer(second)
    assert answer.startswith("accepted: the run is now at version ")
    assert "(added: post; removed: none; changed: none)" in answer
    assert '"id":"post"' in answer


async def test_a_refused_patch_is_corrected_from_its_reasons(
    api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    wrong = [{"op": "add", "path": "/edges/-", "value": {"from": "plan", "to": "ghost"}}]
    summary = {"id": "summary", "type": "transform", "config": {"output": "done"}}
    await scripted.add_script(
        token,
        [
            patch_call(wrong, "a summary after the plan"),
            patch_call(add_node(summary), "a summary after the plan, declared this time"),
            finish(f"planned {token}"),
        ],
    )
    run = await api.finished(await api.started(f"patch-{token}", planner(token)))

    assert run["status"] == "COMPLETED", run
    assert nodes_of(run)["summary"]["status"] == "SUCCEEDED"
    assert nodes_of(run)["summary"]["output"] == "done"
    assert "ghost" not in nodes_of(run)

    _, after_refusal, after_correction = await scripted.requests(token)
    refused = tool_answer(after_refusal)
    assert refused.startswith("refused, nothing was applied:\n- ")
    assert "ghost" in refused
    assert refused.endswith("Correct the patch and call patch_workflow again, or finish.")
    # The model's second request carried the reasons it corrected the patch from.
    assert after_refusal["body"]["messages"][-2]["tool_calls"][0]["function"]["name"] == PATCH_TOOL
    assert tool_answer(after_correction).startswith("accepted: ")


async def test_a_sixth_agent_node_added_by_agents_is_refused_and_the_run_goes_on(
    api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex

    def helper(i: int) -> dict[str, Any]:
        return {"id": f"helper{i}", "type": "agent", "config": {"prompt": f"Help with part {i}"}}

    five = [op for i in range(1, 6) for op in add_node(helper(i))]
    await scripted.add_script(
        token,
        [
            patch_call(five, "five helpers"),
            patch_call(add_node(helper(6)), "one more helper"),
            finish(f"planned {token}"),
        ],
    )
    run = await api.finished(await api.started(f"patch-{token}", planner(token)))

    assert run["status"] == "COMPLETED", run
    nodes = nodes_of(run)
    for i in range(1, 6):
        assert nodes[f"helper{i}"]["status"] == "SUCCEEDED", nodes
        assert nodes[f"helper{i}"]["type"] == "agent"
    assert "helper6" not in nodes
    assert nodes["plan"]["output"]["text"] == f"planned {token}"

    # The helpers see the plan's output (with the token) in their context: keep plan's own.
    requests = [
        r
        for r in await scripted.requests(token)
        if r["body"]["messages"][1]["content"].startswith(f"Plan {token}")
    ]
    _, after_five, after_sixth = requests
    assert tool_answer(after_five).startswith("accepted: ")
    refused = tool_answer(after_sixth)
    assert refused.startswith("refused, nothing was applied:\n- ")
    assert "agents may add at most 5 agent nodes to one run and have added 5" in refused
