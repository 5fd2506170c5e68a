"""Forks on the running system: a run forked just before an approval's decision, decided
the other way, completes down the other branch, reusing what had run before the point
(not running it again), while the original run stays exactly as it was. Through REST and
GraphQL, as a user would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.settings import Settings
from tests.connected.run_client import RunClient, http_clients, statuses

pytestmark = pytest.mark.connected

RUN = """
query Run($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status error input output version
    nodes { id status attempts output outputRef error startedAt finishedAt }
    approvals { nodeId status attempt decision decidedBy comment }
    versions { seq version patchId }
    events(first: 500) { edges { node { id seq type payload causationId } } }
    forkedFrom { runId position seq run { id status } }
    forks { id status }
  }
}
"""

WORKFLOW: dict[str, Any] = {
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"topic": "{{ input.topic }}"}}},
        {"id": "review", "type": "hitl", "config": {"prompt": "Ship it?"}},
        {"id": "ship", "type": "transform", "config": {"output": {"shipped": "{{ input.topic }}"}}},
        {
            "id": "revise",
            "type": "transform",
            "config": {"output": {"revised": "{{ nodes.start.output.topic }}/{{ input.topic }}"}},
        },
        {"id": "done", "type": "noop"},
    ],
    "edges": [
        {"from": "start", "to": "review"},
        {"from": "review", "to": "ship", "when": "approved"},
        {"from": "review", "to": "revise", "when": "rejected"},
        {"from": "ship", "to": "done"},
        {"from": "revise", "to": "done"},
    ],
}


class Client(RunClient):
    async def decide(self, run_id: str, node_id: str, decision: str) -> str:
        r = await self.rest.post(
            f"/v1/runs/{run_id}/approvals/{node_id}", json={"decision": decision}
        )
        assert r.status_code == 202, r.text
        position: str = r.json()["position"]
        return position

    async def fork(self, run_id: str, body: dict[str, Any], expect: int = 202) -> dict[str, Any]:
        r = await self.rest.post(f"/v1/runs/{run_id}/forks", json=body)
        assert r.status_code == expect, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def waiting(self, run_id: str, after: str | None = None) -> dict[str, Any]:
        def check(run: dict[str, Any]) -> None:
            assert run["status"] == "WAITING"
            assert [a["status"] for a in run["approvals"]] == ["WAITING"]

        return await self.until(run_id, check, after)

    async def finished(self, run_id: str, after: str | None = None) -> dict[str, Any]:
        def check(run: dict[str, Any]) -> None:
            assert run["status"] in {"COMPLETED", "FAILED", "CANCELLED"}, run["status"]

        return await self.until(run_id, check, after)


@pytest.fixture
async def client(services: Settings, api_key: str) -> AsyncIterator[Client]:
    async with http_clients(services, api_key) as (rest, gql):
        yield Client(rest, gql, RUN)


def events(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["node"] for e in run["events"]["edges"]]


def nodes(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in run["nodes"]}


async def approved_run(client: Client, unique: str) -> tuple[str, dict[str, Any]]:
    """A run approved and COMPLETED via ``ship``, and the event seq just before the
    decision was submitted."""
    run_id, position = await client.submit(f"fork-{unique}", WORKFLOW, {"topic": "old"})
    await client.waiting(run_id, position)
    after = await client.decide(run_id, "review", "approve")
    run = await client.finished(run_id, after)
    assert run["status"] == "COMPLETED"
    assert statuses(run) == {
        "start": "SUCCEEDED",
        "review": "SUCCEEDED",
        "ship": "SUCCEEDED",
        "revise": "SKIPPED",
        "done": "SUCCEEDED",
    }
    return run_id, run


def before_decision(run: dict[str, Any]) -> dict[str, Any]:
    """The run's event just before the approval's decision was submitted."""
    evs = events(run)
    submitted = next(i for i, e in enumerate(evs) if e["type"] == "run.approval_submitted")
    return evs[submitted - 1]


async def test_a_fork_before_the_decision_decided_the_other_way_goes_down_the_other_branch(
    client: Client, unique: str
) -> None:
    run_id, original = await approved_run(client, unique)
    point = before_decision(original)

    answer = await client.fork(run_id, {"at": point["seq"]})
    fork_id = answer["run_id"]
    assert fork_id != run_id
    assert (answer["forked_from"], answer["at_seq"]) == (run_id, point["seq"])
    fork = await client.waiting(fork_id, answer["position"])
    # The hitl node was waiting at the point: the fork asks again, under its own id.
    assert fork["approvals"][0]["attempt"] == 1
    after = await client.decide(fork_id, "review", "reject")
    fork = await client.finished(fork_id, after)

    assert fork["status"] == "COMPLETED", fork["error"]
    assert statuses(fork) == {
        "start": "SUCCEEDED",
        "review": "SUCCEEDED",
        "ship": "SKIPPED",
        "revise": "SUCCEEDED",
        "done": "SUCCEEDED",
    }
    assert nodes(fork)["revise"]["output"] == {"revised": "old/old"}
    assert [(a["nodeId"], a["decision"]) for a in fork["approvals"]] == [("review", "rejected")]
    # ``start`` was reused, not run again: same output and row, and no attempt in the fork.
    assert nodes(fork)["start"] == nodes(original)["start"]
    start_events = [
        e
        for e in events(fork)
        if e["type"] in {"run.node_scheduled", "run.node_started"}
        and e["payload"]["node_id"] == "start"
    ]
    assert start_events == []
    assert events(fork)[0]["type"] == "run.forked"
    assert fork["forkedFrom"] == {
        "runId": run_id,
        "position": answer["at"],
        "seq": point["seq"],
        "run": {"id": run_id, "status": "COMPLETED"},
    }
    assert fork["versions"] == original["versions"]
    assert fork["forks"] == []

    # The original is exactly as it was, but for the fork it now lists.
    now = await client.run(run_id)
    assert now["forks"] == [{"id": fork_id, "status": "COMPLETED"}]
    assert {**now, "forks": []} == {**original, "forks": []}
    assert now["forkedFrom"] is None


async def test_a_new_input_is_what_runs_after_the_point_sees(client: Client, unique: str) -> None:
    run_id, original = await approved_run(client, unique)
    point = before_decision(original)
    answer = await client.fork(run_id, {"at": point["seq"], "input": {"topic": "new"}})
    at = answer["at"]
    fork = await client.waiting(answer["run_id"], answer["position"])
    assert fork["input"] == {"topic": "new"}
    after = await client.decide(answer["run_id"], "review", "approve")
    fork = await client.finished(answer["run_id"], after)
    assert fork["status"] == "COMPLETED"
    assert nodes(fork)["start"]["output"] == {"topic": "old"}  # reused: made before the point
    assert nodes(fork)["ship"]["output"] == {"shipped": "new"}
    # The same point, given as its log position, is the same fork point.
    again = await client.fork(run_id, {"at": at})
    assert (again["at"], again["at_seq"]) == (at, point["seq"])


async def test_a_fork_at_the_last_event_of_a_completed_run_completes_at_once(
    client: Client, unique: str
) -> None:
    run_id, original = await approved_run(client, unique)
    last = events(original)[-1]["seq"]
    answer = await client.fork(run_id, {"at": str(last)})
    fork = await client.finished(answer["run_id"], answer["position"])
    assert fork["status"] == "COMPLETED"
    assert fork["output"] == original["output"]
    assert [e["type"] for e in events(fork)] == ["run.forked", "run.started", "run.completed"]


async def test_a_fork_of_a_fork(client: Client, unique: str) -> None:
    run_id, original = await approved_run(client, unique)
    first = await client.fork(run_id, {"at": before_decision(original)["seq"]})
    await client.waiting(first["run_id"], first["position"])
    second = await client.fork(first["run_id"], {"at": 1})
    fork = await client.waiting(second["run_id"], second["position"])
    assert fork["forkedFrom"]["runId"] == first["run_id"]
    assert nodes(fork)["start"]["output"] == {"topic": "old"}
    after = await client.decide(second["run_id"], "review", "reject")
    fork = await client.finished(second["run_id"], after)
    assert statuses(fork)["revise"] == "SUCCEEDED"
    assert (await client.run(first["run_id"]))["status"] == "WAITING"


async def test_forks_are_refused_with_a_reason(
    client: Client, services: Settings, other_tenant_key: str, unique: str
) -> None:
    run_id, original = await approved_run(client, unique)
    count = len(events(original))
    outside = await client.fork(run_id, {"at": count + 1}, expect=422)
    assert f"the run has {count} events" in outside["detail"]
    bad = await client.fork(run_id, {"at": "aob.runs.events:nope"}, expect=422)
    assert "position" in bad["detail"]
    unknown = await client.fork(run_id, {"at": 1, "surprise": True}, expect=422)
    assert "unknown field" in unknown["detail"]
    missing = await client.fork("no-such-run", {"at": 1}, expect=404)
    assert "not found" in missing["detail"]
    async with http_clients(services, other_tenant_key) as (rest, _):
        r = await rest.post(f"/v1/runs/{run_id}/forks", json={"at": 1})
        assert r.status_code == 404, r.text
    # None of these made a fork.
    assert (await client.run(run_id))["forks"] == []


async def test_an_idempotency_key_makes_one_fork(client: Client, unique: str) -> None:
    run_id, _ = await approved_run(client, unique)
    headers = {"Idempotency-Key": f"fork-{unique}"}
    answers = []
    for _ in range(2):
        r = await client.rest.post(f"/v1/runs/{run_id}/forks", json={"at": 2}, headers=headers)
        assert r.status_code == 202, r.text
        answers.append(r.json())
    assert answers[0] == answers[1]
    run = await client.waiting(answers[0]["run_id"], answers[0]["position"])
    assert [f["id"] for f in (await client.run(run_id))["forks"]] == [run["id"]]
