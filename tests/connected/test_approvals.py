"""hitl nodes on the running system: a person's decision through REST takes the run down the
approved or the rejected branch; decisions that cannot be taken are refused with a reason;
a node's time limit takes its default outcome. Watched through GraphQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    status error
    nodes { id status output }
    approvals { nodeId status prompt decision comment decidedBy timedOut dueAt
                refusals { decision reason } }
  }
}
"""
PENDING = """
query { pendingApprovals(first: 500) { edges { node { runId nodeId prompt } } } }
"""


def two_reviews(timeout_s: float | None = None, default: str | None = None) -> dict[str, Any]:
    """prepare -> review -(approved)-> publish -> final_review; review -(rejected)-> drop."""
    review: dict[str, Any] = {
        "id": "review",
        "type": "hitl",
        "config": {"prompt": "Publish {{ nodes.prepare.output.items }} items?"},
    }
    if timeout_s is not None:
        review["timeout_s"] = timeout_s
        review["config"]["default_outcome"] = default
    return {
        "nodes": [
            {"id": "prepare", "type": "transform", "config": {"output": {"items": 3}}},
            review,
            {"id": "publish", "type": "noop"},
            {"id": "final_review", "type": "hitl", "config": {"prompt": "Close it?"}},
            {"id": "drop", "type": "noop"},
        ],
        "edges": [
            {"from": "prepare", "to": "review"},
            {"from": "review", "to": "publish", "when": "approved"},
            {"from": "review", "to": "drop", "when": "rejected"},
            {"from": "publish", "to": "final_review"},
        ],
    }


class Client(RunClient):
    async def decide(
        self, run_id: str, node_id: str, decision: str, comment: str | None = None
    ) -> str:
        r = await self.rest.post(
            f"/v1/runs/{run_id}/approvals/{node_id}",
            json={"decision": decision, "comment": comment},
        )
        assert r.status_code == 202, r.text
        assert r.json()["node_id"] == node_id
        position: str = r.json()["position"]
        return position

    async def pending(self) -> set[tuple[str, str]]:
        edges = (await self.query(PENDING))["pendingApprovals"]["edges"]
        return {(e["node"]["runId"], e["node"]["nodeId"]) for e in edges}


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[Client]:
    async with http_clients(services, api_key) as (rest, gql):
        yield Client(rest, gql, RUN)


def nodes(run: dict[str, Any]) -> dict[str, str]:
    return {n["id"]: n["status"] for n in run["nodes"]}


def approval(run: dict[str, Any], node_id: str) -> dict[str, Any]:
    found = [a for a in run["approvals"] if a["nodeId"] == node_id]
    assert found, run
    return found[0]


def waits_on(node_id: str) -> Callable[[dict[str, Any]], None]:
    def check(run: dict[str, Any]) -> None:
        assert run["status"] == "WAITING", run
        assert nodes(run)[node_id] == "WAITING", run
        assert approval(run, node_id)["status"] == "WAITING", run

    return check


async def test_approve_takes_the_approved_branch_and_a_second_decision_is_refused(
    client: Client, unique: str
) -> None:
    run_id, submitted = await client.submit(f"approve-{unique[:8]}", two_reviews())
    run = await client.until(run_id, waits_on("review"), submitted)
    assert approval(run, "review")["prompt"] == "Publish 3 items?"  # rendered by the worker
    assert (run_id, "review") in await client.pending()

    # final_review has not asked yet: a decision on it is refused, and changes nothing.
    early = await client.decide(run_id, "final_review", "approve")
    await client.decide(run_id, "review", "approve", comment="ship it")

    def second_wait(run: dict[str, Any]) -> None:
        waits_on("final_review")(run)
        assert nodes(run)["publish"] == "SUCCEEDED", run
        assert nodes(run)["drop"] == "SKIPPED", run

    run = await client.until(run_id, second_wait, early)
    first = approval(run, "review")
    assert (first["status"], first["decision"], first["comment"]) == (
        "APPROVED",
        "approved",
        "ship it",
    )
    assert first["decidedBy"] and first["decidedBy"] != "timeout"
    review_output = next(n["output"] for n in run["nodes"] if n["id"] == "review")
    assert review_output["decision"] == "approved"
    # The early decision on final_review was refused before it asked; it waits still.
    assert approval(run, "final_review")["refusals"] == []  # refused before its row existed
    assert (run_id, "review") not in await client.pending()
    assert (run_id, "final_review") in await client.pending()

    # A second decision on review: refused with who decided, and the branch stays.
    await client.decide(run_id, "review", "reject")

    def refused(run: dict[str, Any]) -> None:
        assert approval(run, "review")["refusals"], run

    run = await client.until(run_id, refused)
    [refusal] = approval(run, "review")["refusals"]
    assert refusal == {
        "decision": "rejected",
        "reason": f"node 'review' was decided already: approved by {first['decidedBy']}",
    }
    assert approval(run, "review")["decision"] == "approved"

    await client.decide(run_id, "final_review", "approve")
    run = await client.until(run_id, lambda r: _is(r, "COMPLETED"))
    assert nodes(run) == {
        "prepare": "SUCCEEDED",
        "review": "SUCCEEDED",
        "publish": "SUCCEEDED",
        "final_review": "SUCCEEDED",
        "drop": "SKIPPED",
    }
    # Once the run is over, a decision is refused with the run's status.
    await client.decide(run_id, "final_review", "reject")
    run = await client.until(run_id, lambda r: _has_refusal(r, "final_review"))
    assert approval(run, "final_review")["refusals"][0]["reason"] == (
        "the run is COMPLETED: it takes no more decisions"
    )


async def test_reject_takes_the_rejected_branch(client: Client, unique: str) -> None:
    run_id, submitted = await client.submit(f"reject-{unique[:8]}", two_reviews())
    await client.until(run_id, waits_on("review"), submitted)
    await client.decide(run_id, "review", "reject", comment="not now")
    run = await client.until(run_id, lambda r: _is(r, "COMPLETED"))
    assert nodes(run) == {
        "prepare": "SUCCEEDED",
        "review": "SUCCEEDED",
        "publish": "SKIPPED",
        "final_review": "SKIPPED",
        "drop": "SUCCEEDED",
    }
    assert approval(run, "review")["status"] == "REJECTED"
    assert [a["nodeId"] for a in run["approvals"]] == ["review"]  # final_review never asked


async def test_a_decision_on_a_node_not_waiting_is_refused_with_its_reason(
    client: Client, unique: str, services: Settings
) -> None:
    run_id, submitted = await client.submit(f"notwaiting-{unique[:8]}", two_reviews())
    await client.until(run_id, waits_on("review"), submitted)
    # Refusals of nodes that never asked are in the run's events.
    await client.decide(run_id, "prepare", "approve")
    await client.decide(run_id, "final_review", "approve")
    await client.decide(run_id, "ghost", "approve")
    reasons = await eventually(lambda: _refusals(client, run_id, 3), timeout=60)
    assert reasons == {
        "prepare": "node 'prepare' is a 'transform' node; only hitl nodes take decisions",
        "final_review": "node 'final_review' is not waiting for a decision (it is PENDING); "
        "decide once its approval is requested",
        "ghost": "the run has no node 'ghost'",
    }
    run = await client.run(run_id)
    waits_on("review")(run)  # nothing changed


async def test_the_time_limit_takes_the_default_outcome(client: Client, unique: str) -> None:
    definition = two_reviews(timeout_s=1, default="rejected")
    run_id, submitted = await client.submit(f"timeout-{unique[:8]}", definition)
    run = await client.until(run_id, lambda r: _is(r, "COMPLETED"), submitted)
    a = approval(run, "review")
    assert (a["status"], a["decision"], a["decidedBy"], a["timedOut"]) == (
        "REJECTED",
        "rejected",
        "timeout",
        True,
    )
    assert a["dueAt"] is not None
    assert nodes(run)["drop"] == "SUCCEEDED"
    assert nodes(run)["publish"] == "SKIPPED"


def _is(run: dict[str, Any], status: str) -> None:
    assert run["status"] == status, run


def _has_refusal(run: dict[str, Any], node_id: str) -> None:
    assert approval(run, node_id)["refusals"], run


async def _refusals(client: Client, run_id: str, count: int) -> dict[str, str]:
    query = """query Events($id: ID!) { run(id: $id) { events(first: 500) {
        edges { node { type payload } } } } }"""
    body = {"query": query, "variables": {"id": run_id}}
    data = (await client.gql.post("/graphql", json=body)).json()
    assert not data.get("errors"), data
    payloads = [
        e["node"]["payload"]
        for e in data["data"]["run"]["events"]["edges"]
        if e["node"]["type"] == "run.approval_refused"
    ]
    payloads = [json.loads(p) if isinstance(p, str) else p for p in payloads]
    assert len(payloads) >= count, payloads
    return {p["node_id"]: p["reason"] for p in payloads}
