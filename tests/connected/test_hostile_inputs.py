# ruff: noqa: E501  (the hostile payloads read best one per line)
"""Hostile and broken input, against the running system: nothing wedges.

Each case sends one hostile request (or runs one hostile workflow) and then checks:

(a) the request got a 4xx whose detail says why, or the run ended FAILED with its reason
    (or, for the few cases that are legitimate but large, completed whole);
(b) a canary run submitted right after completes: on the very partition of the run the case
    made, when it made one, so that a coordinator stuck on that partition shows here; the
    canary goes through the projector too, which every tenant shares;
(c) the runs in flight all complete: before the first case, one run per partition of the
    run topic is started and left waiting for an approval; after the last case every one of
    them is approved and must complete.

The canaries' latencies (the read model's createdAt to finishedAt) are written to
``hostile-canaries.json`` in the stack's log folder and printed: they are figures for the
reader, never asserted against a time.
"""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from command_api.idempotency import keyed_id
from infra.kafka_metadata import key_partition
from infra.settings import Settings
from tests.connected.conftest import LIVE_HTTP_TARGET
from tests.connected.tenants import unthrottled_key
from tests.helpers import eventually
from tests.http_support import LoopbackServer

pytestmark = pytest.mark.connected

RUN_QUERY = """query($id: ID!) { run(id: $id) {
  id status error output createdAt finishedAt projectionError
  nodes { id status error }
  patches { id status rejectedReasons }
} }"""

NOOPS = {
    "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
    "edges": [{"from": "a", "to": "b"}],
}
HOLD = {
    "nodes": [
        {"id": "ask", "type": "hitl", "config": {"prompt": "go on?"}},
        {"id": "done", "type": "noop"},
    ],
    "edges": [{"from": "ask", "to": "done", "when": "approved"}],
}
TARGET = "http://{}:{}".format(*LIVE_HTTP_TARGET)
MB = "x" * 1_000_000


def _transform(output: Any) -> dict[str, Any]:
    return {"nodes": [{"id": "t", "type": "transform", "config": {"output": output}}], "edges": []}


def _condition(expr: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "c", "type": "condition", "config": {"expr": expr}},
            {"id": "y", "type": "noop"},
        ],
        "edges": [{"from": "c", "to": "y", "when": "true"}],
    }


def _http(path: str) -> dict[str, Any]:
    config = {"method": "GET", "url": f"{TARGET}{path}"}
    return {"nodes": [{"id": "fetch", "type": "http", "config": config}], "edges": []}


def _deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _deep_json(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


# --- the system, as a tenant of its own sees it ------------------------------------------


@dataclass
class Hostile:
    settings: Settings
    tenant: str
    rest: httpx.AsyncClient
    gql: httpx.AsyncClient
    target: LoopbackServer
    partitions: int
    held: list[str] = field(default_factory=list)
    canaries: list[dict[str, Any]] = field(default_factory=list)
    published: set[str] = field(default_factory=set)

    async def publish(self, name: str, definition: dict[str, Any]) -> None:
        if name not in self.published:
            r = await self.rest.post("/v1/workflows", json={"name": name, "definition": definition})
            assert r.status_code == 201, r.text
            self.published.add(name)

    async def submit(
        self, name: str, definition: dict[str, Any], run_input: Any = None, key: str | None = None
    ) -> str:
        await self.publish(name, definition)
        headers = {"Idempotency-Key": key} if key else {}
        r = await self.rest.post(
            "/v1/runs", json={"workflow_id": name, "input": run_input}, headers=headers
        )
        assert r.status_code == 202, r.text
        run_id: str = r.json()["run_id"]
        return run_id

    def key_on(self, partition: int, prefix: str) -> str:
        """An Idempotency-Key whose run lands on ``partition`` (run ids derive from keys)."""
        for i in range(100_000):
            key = f"{prefix}-{i}"
            run_id = keyed_id("run", self.tenant, key)
            assert run_id is not None
            if key_partition(run_id.encode(), self.partitions) == partition:
                return key
        raise AssertionError(f"no key found for partition {partition}")

    def partition_of(self, run_id: str) -> int:
        return key_partition(run_id.encode(), self.partitions)

    async def run(self, run_id: str) -> dict[str, Any] | None:
        r = await self.gql.post("/graphql", json={"query": RUN_QUERY, "variables": {"id": run_id}})
        body = r.json()
        assert not body.get("errors"), body
        run: dict[str, Any] | None = body["data"]["run"]
        return run

    async def until(self, run_id: str, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
        async def settled() -> dict[str, Any]:
            run = await self.run(run_id)
            assert run is not None, f"run {run_id} is not in the read model"
            assert run["status"] in statuses, f"run {run_id} is {run['status']}"
            return run

        return await eventually(settled, timeout=timeout)

    async def canary(self, case: str, partition: int | None) -> None:
        """(b): a canary run completes, on ``partition`` if given."""
        where = partition if partition is not None else len(self.canaries) % self.partitions
        key = self.key_on(where, f"canary-{uuid.uuid4().hex[:8]}")
        run_id = await self.submit("canary", NOOPS, {"case": case}, key=key)
        run = await self.until(run_id, {"COMPLETED"}, timeout=60)
        took = _ms(run["createdAt"], run["finishedAt"])
        self.canaries.append({"case": case, "partition": where, "latency_ms": took})


def _ms(start: str, end: str) -> float:
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds() * 1000, 1)


@pytest.fixture(scope="module")
def target(services: Settings) -> Iterator[LoopbackServer]:
    server = LoopbackServer(host=LIVE_HTTP_TARGET[0], port=LIVE_HTTP_TARGET[1])
    with server.running():
        yield server


@pytest.fixture(scope="module")
async def hostile(services: Settings, target: LoopbackServer) -> AsyncIterator[Hostile]:
    tenant = f"hostile-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {await unthrottled_key(services, tenant)}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=60) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=60) as gql,
    ):
        h = Hostile(services, tenant, rest, gql, target, services.topic_partitions)
        # (c): one run per partition, waiting for a person, all through the cases.
        for p in range(h.partitions):
            h.held.append(await h.submit("hold", HOLD, key=h.key_on(p, f"held-{p}")))
        for run_id in h.held:
            await h.until(run_id, {"WAITING"})
        await h.canary("before any case", None)
        yield h
        figures = {
            "cases": len({c["case"] for c in h.canaries}) - 1,
            "canary_latency_ms": {
                "median": statistics.median(c["latency_ms"] for c in h.canaries),
                "max": max(c["latency_ms"] for c in h.canaries),
            },
            "canaries": h.canaries,
        }
        out = Path(services.home) / "logs" / "hostile-canaries.json"
        out.write_text(json.dumps(figures, indent=1))
        print(f"\nhostile inputs: canaries {figures['canary_latency_ms']} ({out})")


def refused(r: httpx.Response, *words: str) -> dict[str, Any]:
    """(a) for a request: a 4xx problem whose detail has every one of ``words``."""
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    problem: dict[str, Any] = r.json()
    for word in words:
        assert word in problem["detail"], f"{word!r} is not in {problem['detail'][:500]!r}"
    return problem


async def failed(h: Hostile, run_id: str, *words: str) -> dict[str, Any]:
    """(a) for a run: FAILED, and its error or a node's has every one of ``words``."""
    run = await h.until(run_id, {"FAILED", "COMPLETED", "CANCELLED"})
    assert run["status"] == "FAILED", run
    reasons = " | ".join([run["error"] or "", *(n["error"] or "" for n in run["nodes"])])
    for word in words:
        assert word in reasons, f"{word!r} is not in {reasons[:1000]!r}"
    return run


async def patch_rejected(h: Hostile, run_id: str, patch_id: str) -> None:
    """(a) for a patch: the run shows it REJECTED, with its reasons."""

    async def rejected() -> None:
        run = await h.run(run_id)
        assert run is not None
        patches = [p for p in run["patches"] if p["id"] == patch_id]
        assert patches, f"patch {patch_id} is not in the read model yet"
        assert patches[0]["status"] == "REJECTED", patches[0]
        assert patches[0]["rejectedReasons"], patches[0]

    await eventually(rejected, timeout=60)


# --- requests refused at the door --------------------------------------------------------


@dataclass(frozen=True)
class Request:
    case: str
    method: str
    path: str
    body: bytes | None
    words: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    status: int | None = None


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _submit(run_input: Any) -> bytes:
    return _json({"workflow_id": "canary", "input": run_input})


def _publish(definition: Any, name: str = "hostile-wf") -> bytes:
    return _json({"name": name, "definition": definition})


TEN_THOUSAND = {
    "nodes": [{"id": f"n{i}", "type": "noop"} for i in range(10_000)],
    "edges": [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(9_999)],
}

REQUESTS = [
    Request(
        "NUL in a run's input", "POST", "/v1/runs", _submit({"s": "a\x00b"}), ("input.s", "NUL")
    ),
    Request(
        "NUL deep in a run's input",
        "POST",
        "/v1/runs",
        _submit({"items": [{}, {}, {}, {"name": "\x00"}]}),
        ("input.items[3].name",),
    ),
    Request("NUL in a key of the input", "POST", "/v1/runs", _submit({"k\x00": 1}), ("NUL",)),
    Request(
        "NUL in a node config",
        "POST",
        "/v1/workflows",
        _publish(
            {
                "nodes": [{"id": "t", "type": "transform", "config": {"output": "a\x00"}}],
                "edges": [],
            }
        ),
        ("definition.nodes[0].config.output", "NUL"),
    ),
    Request(
        "NUL in a workflow name",
        "POST",
        "/v1/workflows",
        _publish(NOOPS, name="wf\x00"),
    ),
    Request(
        "lone surrogate (escaped) in the input",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": {"s": "\\ud800"}}',
        ("input.s", "surrogate"),
    ),
    Request(
        "lone surrogate (raw bytes, not UTF-8)",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": {"s": "\xed\xa0\x80"}}',
    ),
    Request(
        "lone surrogate in a node config",
        "POST",
        "/v1/workflows",
        b'{"name": "sur", "definition": {"nodes": [{"id": "t", "type": "transform", "config": {"output": "\\udfff"}}], "edges": []}}',
        ("surrogate",),
    ),
    Request("input nested 65 deep", "POST", "/v1/runs", _submit(_deep(65)), ("deeper",)),
    Request("input nested 255 deep", "POST", "/v1/runs", _submit(_deep(255)), ("deeper",)),
    Request(
        "input nested 100,000 deep",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": ' + _deep_json(100_000).encode() + b"}",
    ),
    Request(
        "1e400 in the input",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": {"n": 1e400}}',
        ("finite",),
    ),
    Request(
        "10^400 in the input", "POST", "/v1/runs", _submit({"n": 10**400}), ("input.n", "64 bits")
    ),
    Request(
        "NaN in the input",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": {"n": NaN}}',
        ("NaN",),
    ),
    Request(
        "-Infinity in the input",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": [-Infinity]}',
    ),
    Request(
        "duplicate keys",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "input": {"a": 1, "a": 2}}',
        ('"a"', "twice"),
    ),
    Request(
        "duplicate top-level keys",
        "POST",
        "/v1/runs",
        b'{"workflow_id": "canary", "workflow_id": "other"}',
    ),
    Request("a 10,000-node definition", "POST", "/v1/workflows", _publish(TEN_THOUSAND)),
    Request("1 MB workflow name", "POST", "/v1/workflows", _publish(NOOPS, name=MB)),
    Request("1 MB string in the input", "POST", "/v1/runs", _submit({"s": MB})),
    Request("1 MB workflow id", "POST", "/v1/runs", _json({"workflow_id": MB})),
    Request("1 MB version", "POST", "/v1/runs", _json({"workflow_id": "canary", "version": MB})),
    Request("1 MB key in the input", "POST", "/v1/runs", _submit({MB: 1})),
    Request(
        "1 MB node id",
        "POST",
        "/v1/workflows",
        _publish({"nodes": [{"id": MB, "type": "noop"}], "edges": []}),
    ),
    Request(
        "1 MB config string",
        "POST",
        "/v1/workflows",
        _publish(
            {"nodes": [{"id": "t", "type": "transform", "config": {"output": MB}}], "edges": []}
        ),
    ),
    Request("1 MB cancel reason", "POST", "/v1/runs/{run}/cancel", _json({"reason": MB})),
    Request(
        "1 MB approval comment",
        "POST",
        "/v1/runs/{run}/approvals/ask",
        _json({"decision": "approve", "comment": MB}),
    ),
    Request(
        "NUL in an approval comment",
        "POST",
        "/v1/runs/{run}/approvals/ask",
        _json({"decision": "approve", "comment": "ok\x00"}),
        ("comment", "NUL"),
    ),
    Request(
        "1 MB patch reason",
        "POST",
        "/v1/runs/{run}/patches",
        _json({"patch": [{"op": "test", "path": "/nodes", "value": []}], "reason": MB}),
    ),
    Request(
        "NUL in a patch's value",
        "POST",
        "/v1/runs/{run}/patches",
        _json(
            {
                "patch": [
                    {
                        "op": "add",
                        "path": "/nodes/-",
                        "value": {"id": "z", "type": "noop", "config": {"s": "\x00"}},
                    }
                ],
                "reason": "r",
            }
        ),
        ("NUL",),
    ),
    Request(
        "10,000 patch operations",
        "POST",
        "/v1/runs/{run}/patches",
        _json(
            {
                "patch": [{"op": "test", "path": "/nodes/0/id", "value": "ask"}] * 10_000,
                "reason": "r",
            }
        ),
    ),
    Request("1 MB fork point", "POST", "/v1/runs/{run}/forks", _json({"at": MB})),
    Request("NUL in a path parameter", "POST", "/v1/runs/run%00x/cancel", _json({})),
    Request("a lone surrogate in a path parameter", "POST", "/v1/runs/%ED%A0%80/cancel", _json({})),
    Request(
        "a 10,000-character path parameter",
        "POST",
        "/v1/runs/" + "r" * 10_000 + "/cancel",
        _json({}),
    ),
    Request(
        "300-character Idempotency-Key",
        "POST",
        "/v1/runs",
        _submit(1),
        headers=(("Idempotency-Key", "k" * 300),),
    ),
    Request("not JSON", "POST", "/v1/runs", b"{workflow_id: canary}"),
    Request("a JSON array as the body", "POST", "/v1/runs", b"[1, 2]"),
    Request("an empty body", "POST", "/v1/runs", b""),
    Request("a body over the size limit", "POST", "/v1/runs", _submit("x" * 2_000_000), status=413),
    Request("a JSON string as the body", "POST", "/v1/workflows", b'"just a string"'),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=[r.case for r in REQUESTS])
async def test_a_hostile_request_is_refused_with_its_reason(
    hostile: Hostile, request_: Request
) -> None:
    await hostile.publish("canary", NOOPS)
    # A case aimed at a run gets a run of its own, waiting for a decision: if the request
    # got through, it would show there.
    target = None
    if "{run}" in request_.path:
        target = await hostile.submit("hold", HOLD)
        await hostile.until(target, {"WAITING"})
    path = request_.path.format(run=target)
    headers = {"Content-Type": "application/json", **dict(request_.headers)}
    r = await hostile.rest.request(request_.method, path, content=request_.body, headers=headers)
    refused(r, *request_.words)
    if request_.status is not None:
        assert r.status_code == request_.status, r.text[:300]
    if target is not None:
        run = await hostile.run(target)
        assert run is not None and run["status"] == "WAITING", run
        await hostile.rest.post(f"/v1/runs/{target}/cancel", json={})
    await hostile.canary(request_.case, None)


# --- runs that must fail with their reason, or complete whole ------------------------------


def _burn(body: str) -> dict[str, Any]:
    return _transform({"v": body})


# Templates that burn CPU or memory in each way the sandbox allows: the render is stopped
# at its limit and the node fails with it.
TEMPLATES = {
    "nested loops (CPU)": "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
    "~ growth (memory)": "{{ ('x' * 1000000 ~ 'x' * 1000000) | replace('x', 'x' * 1000) | length }}",
    "+ growth (memory)": "{{ ('x' * 1000000 + 'y' * 1000000) | replace('x', 'x' * 100) | replace('y', 'y' * 100) | replace('x', 'xx') | length }}",
    "join of a big list": "{{ range(10000) | map('string') | join('x' * 100000) | length }}",
    "replace growth": "{{ ('x' * 100000) | replace('x', 'x' * 10000) | length }}",
    "center width": "{{ 'x' | center(2000000000) | length }}",
    "format width": "{{ '%2000000000d' | format(1) | length }}",
    "% width": "{{ ('%2000000000s' % 'x') | length }}",
    "list * int": "{{ ((range(10000) | list) * 100000) | length }}",
    "recursive macro": "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "sum of a big list": "{% for i in range(10000) %}{% for j in range(10000) %}{% if (range(100) | sum) < 0 %}x{% endif %}{% endfor %}{% endfor %}",
}


@pytest.mark.parametrize("name", list(TEMPLATES), ids=list(TEMPLATES))
async def test_a_template_that_burns_cpu_or_memory_fails_its_node(
    hostile: Hostile, name: str
) -> None:
    workflow = f"burn-{uuid.uuid4().hex[:8]}"
    run_id = await hostile.submit(workflow, _burn(TEMPLATES[name]))
    await failed(hostile, run_id)
    await hostile.canary(f"template: {name}", hostile.partition_of(run_id))


async def test_a_condition_that_burns_cpu_fails_its_node(hostile: Hostile) -> None:
    expr = "range(10000) | map('string') | join('x' * 100000) | length > 1"
    run_id = await hostile.submit("burning-condition", _condition(expr))
    await failed(hostile, run_id)
    await hostile.canary("condition burns memory", hostile.partition_of(run_id))


async def test_a_hitl_prompt_that_burns_cpu_fails_its_node(hostile: Hostile) -> None:
    prompt = TEMPLATES["nested loops (CPU)"]
    definition = {
        "nodes": [{"id": "ask", "type": "hitl", "config": {"prompt": prompt}}],
        "edges": [],
    }
    run_id = await hostile.submit("burning-prompt", definition)
    await failed(hostile, run_id)
    await hostile.canary("hitl prompt burns CPU", hostile.partition_of(run_id))


OUTPUTS = {
    "an integer past 64 bits": ("{{ 10 ** 400 }}", ("64 bits",)),
    "a template nested 300 deep": ("{{ " + "[" * 300 + "1" + "]" * 300 + " }}", ()),
    "a NUL made by a template": ("{{ 'a' ~ '\\x00' }}", ()),
}


@pytest.mark.parametrize("name", list(OUTPUTS), ids=list(OUTPUTS))
async def test_a_node_output_that_breaks_a_rule_fails_its_node(hostile: Hostile, name: str) -> None:
    template, words = OUTPUTS[name]
    run_id = await hostile.submit(f"out-{uuid.uuid4().hex[:8]}", _transform(template))
    await failed(hostile, run_id, *words)
    await hostile.canary(f"output: {name}", hostile.partition_of(run_id))


RESPONSES = {
    "nested 300 deep": ("application/json", _deep_json(300).encode()),
    "nested 100,000 deep": ("application/json", _deep_json(100_000).encode()),
    "with a NUL": ("application/json", b'{"s": "a\\u0000b"}'),
    "with a lone surrogate": ("application/json", b'{"s": "\\ud800"}'),
    "with NaN": ("application/json", b'{"n": NaN}'),
    "with 10^400": ("application/json", b'{"n": 1' + b"0" * 400 + b"}"),
    "with duplicate keys": ("application/json", b'{"a": 1, "a": 2}'),
    "not UTF-8": ("application/json", b'{"s": "\xff\xfe"}'),
    "text with a NUL": ("text/plain", b"a\x00b"),
}


@pytest.mark.parametrize("name", list(RESPONSES), ids=list(RESPONSES))
async def test_a_hostile_http_response_fails_its_node_or_is_kept_safely(
    hostile: Hostile, name: str
) -> None:
    """A response the worker cannot take as JSON fails the node with the reason; one it
    keeps (as text) must be stored and shown whole. Either way, nothing stops."""
    path = f"/canned/{uuid.uuid4().hex[:8]}"
    hostile.target.canned[path] = RESPONSES[name]
    run_id = await hostile.submit(f"http-{uuid.uuid4().hex[:8]}", _http(path))
    run = await hostile.until(run_id, {"FAILED", "COMPLETED"})
    if run["status"] == "FAILED":
        assert any(n["error"] for n in run["nodes"]), run
    else:
        assert run["projectionError"] is None, run
        assert [n["status"] for n in run["nodes"]] == ["SUCCEEDED"], run
        fetched = run["output"]["fetch"]  # the response, or its CAS reference when large
        assert fetched.get("status") == 200 or fetched.get("$ref"), run
    await hostile.canary(f"http response {name}", hostile.partition_of(run_id))


async def test_outputs_whose_sum_passes_the_event_limit_complete_whole(hostile: Hostile) -> None:
    """70 sinks of 16 KB each: more than one event may carry, so the run's completion must
    not carry them all; the read model's output still has every one."""
    nodes = [
        {"id": f"s{i}", "type": "transform", "config": {"output": "{{ 'x' * 16000 }}"}}
        for i in range(70)
    ]
    run_id = await hostile.submit("seventy-sinks", {"nodes": nodes, "edges": []})
    run = await hostile.until(run_id, {"COMPLETED", "FAILED"}, timeout=120)
    assert run["status"] == "COMPLETED", run
    assert sorted(run["output"]) == sorted(f"s{i}" for i in range(70))
    assert all(v == "x" * 16000 for v in run["output"].values())
    await hostile.canary("70 outputs of 16 KB", hostile.partition_of(run_id))


async def test_a_patch_whose_refusal_would_be_huge_is_refused_small(hostile: Hostile) -> None:
    """A run of a large definition, and a large patch written against a version it is not
    at: the refusal would carry the whole definition and a reason per operation."""
    pad = "p" * 140_000
    big = {
        "nodes": [
            {"id": "ask", "type": "hitl", "config": {"prompt": "go?", "pad": pad}},
            {"id": "done", "type": "noop"},
        ],
        "edges": [{"from": "ask", "to": "done", "when": "approved"}],
    }
    run_id = await hostile.submit("big-definition", big)
    await hostile.until(run_id, {"WAITING"})
    ops = [{"op": "replace", "path": "/nodes/0/config/pad", "value": "q" * 140} for _ in range(900)]
    r = await hostile.rest.post(
        f"/v1/runs/{run_id}/patches",
        json={"patch": ops, "reason": "hostile", "base_version": "0" * 64},
    )
    assert r.status_code == 202, r.text
    await patch_rejected(hostile, run_id, r.json()["patch_id"])
    await hostile.canary("a patch whose refusal would be huge", hostile.partition_of(run_id))
    r = await hostile.rest.post(f"/v1/runs/{run_id}/cancel", json={"reason": "done"})
    assert r.status_code == 202, r.text


async def test_a_patch_that_would_make_the_version_too_large_is_refused(hostile: Hostile) -> None:
    run_id = await hostile.submit("grow-me", HOLD)
    await hostile.until(run_id, {"WAITING"})
    ops = [
        {
            "op": "add",
            "path": "/nodes/-",
            "value": {"id": f"g{i}", "type": "noop", "config": {"pad": "g" * 100_000}},
        }
        for i in range(9)
    ]
    r = await hostile.rest.post(f"/v1/runs/{run_id}/patches", json={"patch": ops, "reason": "grow"})
    if r.status_code != 202:  # refused at the door already: as good
        refused(r)
    else:
        await patch_rejected(hostile, run_id, r.json()["patch_id"])
    await hostile.canary(
        "a patch that would make the version too large", hostile.partition_of(run_id)
    )
    r = await hostile.rest.post(f"/v1/runs/{run_id}/cancel", json={})
    assert r.status_code == 202, r.text


async def test_input_at_the_nesting_limit_runs_and_is_shown_whole(hostile: Hostile) -> None:
    """The control: what the rules allow goes through every part and back."""
    value = {"emoji 😀": _deep(60, "leaf"), "big": 2**63 - 1, "pair": "\U0001f600"}
    run_id = await hostile.submit("at-the-limit", NOOPS, value)
    run = await hostile.until(run_id, {"COMPLETED"})
    assert run["projectionError"] is None
    await hostile.canary("input at the nesting limit", hostile.partition_of(run_id))


async def test_every_run_in_flight_completes(hostile: Hostile) -> None:
    """(c): the runs held since before the first case, one per partition, all complete."""
    for run_id in hostile.held:
        r = await hostile.rest.post(
            f"/v1/runs/{run_id}/approvals/ask", json={"decision": "approve"}
        )
        assert r.status_code == 202, r.text
    for run_id in hostile.held:
        await hostile.until(run_id, {"COMPLETED"})
