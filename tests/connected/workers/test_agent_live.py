"""Agent nodes through the running system that ``aob up`` started: REST -> coordinator ->
the agent worker -> the scripted model (started because no OPENAI_API_KEY is set) -> the
read side, with the model's replies scripted per test through the scripted model's admin API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from infra.scripted_llm.client import ScriptedLLMClient
from infra.settings import Settings
from schemas.codec import HEADER_TYPE
from tests.connected.log_reading import end_offsets, run_records
from tests.helpers import eventually

pytestmark = pytest.mark.connected

QUERY = """
query Run($id: ID!) {
  run(id: $id) {
    status error
    usage { promptTokens completionTokens totalTokens cachedTokens }
    nodes { id type status attempts output error
            usage { promptTokens completionTokens totalTokens cachedTokens } }
  }
}
"""


def workflow(name: str, prompt: str) -> dict[str, Any]:
    return {
        "name": name,
        "definition": {
            "nodes": [
                {"id": "start", "type": "transform", "config": {"output": {"n": 3}}},
                {"id": "write", "type": "agent", "config": {"prompt": prompt, "max_turns": 2}},
            ],
            "edges": [{"from": "start", "to": "write"}],
        },
    }


class Api:
    def __init__(self, rest: httpx.AsyncClient, gql: httpx.AsyncClient) -> None:
        self.rest, self.gql = rest, gql

    async def run(self, token: str, prompt: str) -> str:
        name = f"agent-{token}"
        published = await self.rest.post("/v1/workflows", json=workflow(name, prompt))
        assert published.status_code == 201, published.text
        submitted = await self.rest.post("/v1/runs", json={"workflow_id": name, "input": {}})
        assert submitted.status_code == 202, submitted.text
        return str(submitted.json()["run_id"])

    async def finished(self, run_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any]:
            response = await self.gql.post(
                "/graphql", json={"query": QUERY, "variables": {"id": run_id}}
            )
            run = response.json()["data"]["run"]
            assert run is not None and run["status"] in {"COMPLETED", "FAILED"}, run
            return dict(run)

        return await eventually(done, timeout=90)


@pytest.fixture
async def api(services: Settings, api_key: str) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=30) as gql,
    ):
        yield Api(rest, gql)


async def model_calls(bootstrap: str, run_id: str) -> list[dict[str, Any]]:
    """The payloads of the run's ``run.model_called`` events in aob.runs.events."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        until = await end_offsets(consumer)
    finally:
        await consumer.stop()
    return [
        json.loads(r.value)["payload"]
        async for _, r in run_records(bootstrap, until, {run_id})
        if dict(r.headers or ()).get(HEADER_TYPE) == b"run.model_called"
    ]


def nodes_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in run["nodes"]}


async def test_an_agent_node_completes_with_its_text_and_usage(
    services: Settings, api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    usage = {
        "prompt_tokens": 321,
        "completion_tokens": 12,
        "total_tokens": 333,
        "cached_tokens": 256,
    }
    finish = {"name": "finish", "arguments": {"output": f"Three, said the model {token}."}}
    await scripted.add_script(token, [{"tool_calls": [finish], "usage": usage}])

    run_id = await api.run(token, f"Count for {token}: {{{{ nodes.start.output.n }}}}")
    run = await api.finished(run_id)

    assert run["status"] == "COMPLETED", run
    output = nodes_of(run)["write"]["output"]
    assert output["text"] == f"Three, said the model {token}."
    assert output["usage"] == usage and output["turns"] == 1
    [request] = await scripted.requests(token)
    assert request["body"]["messages"][1]["content"].startswith(f"Count for {token}: 3")

    async def called() -> list[dict[str, Any]]:
        found = await model_calls(services.kafka_bootstrap, run_id)
        assert found, "no run.model_called yet"
        return found

    calls = await eventually(called)
    assert [(c["node_id"], c["turn"], c["usage"]) for c in calls] == [("write", 1, usage)]
    assert calls[0]["tool_calls"] == ["finish"]
    # The read model: usage on the node, summed on the run (the only agent node here).
    in_graphql = {"promptTokens": 321, "completionTokens": 12, "totalTokens": 333}
    assert nodes_of(run)["write"]["usage"] == {**in_graphql, "cachedTokens": 256}
    assert nodes_of(run)["start"]["usage"]["totalTokens"] == 0
    assert run["usage"] == {**in_graphql, "cachedTokens": 256}


async def test_a_429_then_success_is_retried_and_the_run_completes(
    api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    await scripted.add_script(
        token,
        [
            {
                "status": 429,
                "headers": {"retry-after": "0.3"},
                "error": {"message": "Rate limit reached", "type": "requests", "code": None},
            },
            {"content": f"answer after the wait {token}"},
        ],
    )
    run = await api.finished(await api.run(token, f"Say something {token}"))
    assert run["status"] == "COMPLETED", run
    write = nodes_of(run)["write"]
    assert write["output"]["text"] == f"answer after the wait {token}"
    assert write["attempts"] == 1  # retried inside the attempt, by the one retry layer
    assert [r["status"] for r in await scripted.requests(token)] == [429, 200]


async def test_a_400_fails_the_node_and_the_run_with_the_models_message(
    api: Api, scripted: ScriptedLLMClient
) -> None:
    token = uuid.uuid4().hex
    message = f"This model's maximum context length is 8 tokens ({token})"
    await scripted.add_script(
        token,
        [
            {
                "status": 400,
                "error": {"message": message, "type": "invalid_request_error", "code": "ctx"},
            },
            {"content": "must never be asked"},
        ],
    )
    run = await api.finished(await api.run(token, f"Too long {token}"))
    assert run["status"] == "FAILED", run
    write = nodes_of(run)["write"]
    assert write["status"] == "FAILED"
    assert f"refused the request (400): {message}" in write["error"]
    assert message in run["error"]
    assert len(await scripted.requests(token)) == 1
