"""The agents' patch policy on the running system: an agent steered by the scripted model tries
every patch the policy forbids (re-point a person's http node, loosen its time limit, remove
the gated node, run it past its approval, give tools, read a secret), each is refused with
the rule named in the tool's answer, and the run goes on: the one allowed patch applies, the
person's approval still decides, and nothing reaches a place the person did not write."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from infra.scripted_llm.client import ScriptedLLMClient
from schemas.workflow import PATCH_TOOL
from tests.connected.workers.test_agent_patches_live import (
    Api,
    add_node,
    api,  # noqa: F401 - the fixture
    finish,
    nodes_of,
    patch_call,
    tool_answer,
)
from tests.helpers import eventually
from tests.http_support import LoopbackServer

pytestmark = pytest.mark.connected

PATCHES = """query($id: ID!) { run(id: $id) { patches { status rejectedReasons } } }"""


def guarded(token: str, target: str) -> dict[str, Any]:
    """start -> plan (may patch) -> fetch (a person's credentials) -> approve -> pay."""
    return {
        "nodes": [
            {"id": "start", "type": "noop"},
            {
                "id": "plan",
                "type": "agent",
                "timeout_s": 60,
                "config": {"prompt": f"Plan {token}", "max_turns": 12, "tools": [PATCH_TOOL]},
            },
            {
                "id": "fetch",
                "type": "http",
                "config": {
                    "url": f"{target}/fetch",
                    "headers": {"Authorization": f"Bearer k-{token}"},
                },
            },
            {"id": "approve", "type": "hitl", "config": {"prompt": "pay?"}},
            {"id": "pay", "type": "http", "config": {"method": "POST", "url": f"{target}/pay"}},
        ],
        "edges": [
            {"from": "start", "to": "plan"},
            {"from": "plan", "to": "fetch"},
            {"from": "fetch", "to": "approve"},
            {"from": "approve", "to": "pay", "when": "approved"},
        ],
    }


async def test_every_forbidden_agent_patch_is_refused_by_rule_and_the_run_goes_on(
    api: Api,  # noqa: F811 - the fixture
    scripted: ScriptedLLMClient,
    live_http_target: LoopbackServer,
) -> None:
    token = uuid.uuid4().hex
    definition = guarded(token, live_http_target.base)
    edges = definition["edges"]
    no_gate = [e for e in edges if e["to"] != "pay"]
    forbidden = [
        (
            [{"op": "replace", "path": "/nodes/2/config/url", "value": "https://x.example/"}],
            "agent-may-not-change-others-nodes",
        ),
        (
            [{"op": "add", "path": "/nodes/2/timeout_s", "value": 1}],
            "agent-may-not-change-others-nodes",
        ),
        (
            [
                {"op": "remove", "path": "/nodes/4"},
                {"op": "replace", "path": "/edges", "value": no_gate},
            ],
            "agent-may-not-remove-others-nodes",
        ),
        (
            [
                *add_node({"id": "hook", "type": "noop"}),
                {"op": "add", "path": "/edges/-", "value": {"from": "hook", "to": "pay"}},
            ],
            "agent-may-not-reroute-others-nodes",
        ),
        (
            add_node(
                {
                    "id": "spy",
                    "type": "agent",
                    "config": {"prompt": "x", "tools": [PATCH_TOOL]},
                }
            ),
            "agent-may-not-give-tools",
        ),
        (
            add_node(
                {
                    "id": "leak",
                    "type": "http",
                    "config": {
                        "method": "POST",
                        "url": f"{live_http_target.base}/leak",
                        "body": {"t": "{{ secrets.API_TOKEN }}"},
                    },
                }
            ),
            "agent-may-not-read-secrets",
        ),
    ]
    allowed = add_node({"id": "notes", "type": "transform", "config": {"output": "ok"}})
    await scripted.add_script(
        token,
        [
            *(patch_call(ops, f"try {rule}") for ops, rule in forbidden),
            patch_call(allowed, "notes of my own"),
            finish(f"planned {token}"),
        ],
    )
    run_id = await api.started(f"policy-{token[:12]}", definition)

    async def waiting_for_approval() -> None:
        run = await api.run(run_id)
        assert nodes_of(run)["approve"]["status"] == "WAITING", nodes_of(run)

    await eventually(waiting_for_approval, timeout=120)
    r = await api.rest.post(f"/v1/runs/{run_id}/approvals/approve", json={"decision": "reject"})
    assert r.status_code == 202, r.text
    run = await api.finished(run_id)

    assert run["status"] == "COMPLETED", run
    nodes = nodes_of(run)
    assert nodes["notes"]["status"] == "SUCCEEDED"
    assert nodes["fetch"]["status"] == "SUCCEEDED"
    assert nodes["pay"]["status"] == "SKIPPED"  # the person's rejection held
    assert not {"hook", "spy", "leak"} & nodes.keys()

    # The model was told, each time, which rule its patch broke.
    answers = [tool_answer(req) for req in (await scripted.requests(token))[1:]]
    assert len(answers) == len(forbidden) + 1, answers
    for answer, (_, rule) in zip(answers, forbidden, strict=False):
        assert answer.startswith("refused"), answer
        assert f"(rule: {rule})" in answer, (rule, answer)
    assert answers[len(forbidden)].startswith("accepted"), answers[-1]

    paths = [s.path for s in live_http_target.seen if token in s.headers.get("Authorization", "")]
    assert paths == ["/fetch"]
    assert not [s for s in live_http_target.seen if s.path in ("/pay", "/leak")]
    patches = (await api.query(PATCHES, {"id": run_id}))["run"]["patches"]
    assert sorted(p["status"] for p in patches) == ["APPLIED"] + ["REJECTED"] * len(forbidden)
