"""wait_event nodes on the running system: a run waits for an outside event with its name
and its key (rendered from the run's input); an event with another key reaches nothing and
the run goes on waiting; the matching one takes the ``received`` edge with its data as the
node's output. A run whose event never comes takes the ``timeout`` edge when its time is up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) { status nodes { id status output } }
}
"""


def payment(timeout_s: float) -> dict[str, Any]:
    """pay waits for ("payment", input.order) -(received)-> ship; -(timeout)-> chase."""
    return {
        "nodes": [
            {
                "id": "pay",
                "type": "wait_event",
                "config": {"name": "payment", "key": "{{ input.order }}"},
                "timeout_s": timeout_s,
            },
            {"id": "ship", "type": "transform", "config": {"output": "{{ nodes.pay.output }}"}},
            {"id": "chase", "type": "noop"},
        ],
        "edges": [
            {"from": "pay", "to": "ship", "when": "received"},
            {"from": "pay", "to": "chase", "when": "timeout"},
        ],
    }


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[RunClient]:
    async with http_clients(services, api_key) as (rest, gql):
        yield RunClient(rest, gql, RUN)


def waits(run: dict[str, Any]) -> None:
    assert run["status"] == "WAITING", run
    assert statuses(run)["pay"] == "WAITING", run


def ended(run_status: str, **nodes: str) -> Callable[[dict[str, Any]], None]:
    def check(run: dict[str, Any]) -> None:
        assert run["status"] == run_status, run
        for node_id, status in nodes.items():
            assert statuses(run)[node_id] == status, run

    return check


async def post(client: RunClient, key: str, data: Any) -> dict[str, Any]:
    r = await client.rest.post("/v1/events", json={"name": "payment", "key": key, "data": data})
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def test_a_run_resumes_on_its_own_key_only(client: RunClient, unique: str) -> None:
    name = f"pay-{unique[:8]}"
    order_a, order_b = f"A-{unique[:6]}", f"B-{unique[:6]}"
    run_a, at_a = await client.submit(name, payment(timeout_s=120), {"order": order_a})
    r = await client.rest.post("/v1/runs", json={"workflow_id": name, "input": {"order": order_b}})
    assert r.status_code == 202, r.text
    run_b = r.json()["run_id"]
    await client.until(run_a, waits, at_a)
    await client.until(run_b, waits)

    # Another key reaches no run; A's key reaches A only.
    other = await post(client, f"C-{unique[:6]}", {"paid": 0})
    assert other["delivered_to"] == []
    answer = await post(client, order_a, {"paid": 42})
    assert [d["run_id"] for d in answer["delivered_to"]] == [run_a]

    run = await client.until(
        run_a,
        ended("COMPLETED", pay="SUCCEEDED", ship="SUCCEEDED", chase="SKIPPED"),
        answer["delivered_to"][0]["position"],
    )
    outputs = {n["id"]: n["output"] for n in run["nodes"]}
    assert outputs["pay"] == {"paid": 42}
    assert outputs["ship"] == {"paid": 42}
    # B still waits: the event was for A's key. Posted again, A's key reaches nothing.
    await client.until(run_b, waits)
    assert (await post(client, order_a, {"paid": 1}))["delivered_to"] == []

    answer = await post(client, order_b, {"paid": 7})
    assert [d["run_id"] for d in answer["delivered_to"]] == [run_b]
    await client.until(run_b, ended("COMPLETED", ship="SUCCEEDED", chase="SKIPPED"))


async def test_a_run_whose_event_never_comes_takes_its_timeout_edge(
    client: RunClient, unique: str
) -> None:
    name = f"late-{unique[:8]}"
    order = f"L-{unique[:6]}"
    run_id, at = await client.submit(name, payment(timeout_s=2), {"order": order})
    run = await client.until(
        run_id, ended("COMPLETED", pay="SUCCEEDED", ship="SKIPPED", chase="SUCCEEDED"), at
    )
    assert {n["id"]: n["output"] for n in run["nodes"]}["pay"] is None
    # Its time is up: an event now reaches nothing.
    assert (await post(client, order, {"paid": 1}))["delivered_to"] == []
