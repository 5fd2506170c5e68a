"""The command API's pure parts: problem mapping, body limit, idempotency hashing, rate limit,
the publish command's refusal of a name that reads as an id.

The small apps here carry only ``problems.install`` and ``BodyLimit``: no server is needed.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from command_api import problems
from command_api.app import BodyLimit
from command_api.errors import (
    BadRequest,
    CommandError,
    Conflict,
    InvalidInput,
    NotAvailable,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from command_api.idempotency import keyed_id, request_hash
from infra.ratelimit import TokenBuckets
from schemas import InvalidWorkflow, PublishWorkflow
from schemas.values import loads_strict


def _app(max_bytes: int | None = 100) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.post("/raise/{kind}")
    async def raise_(kind: str) -> None:
        errors: dict[str, Exception] = {
            "unauthorized": Unauthorized("no key"),
            "notfound": NotFound("no such run"),
            "ratelimited": RateLimited("slow down", 2.2),
            "workflow": InvalidWorkflow(["the graph has a cycle: a -> b -> a"]),
            "notavailable": NotAvailable("not in this release"),
            "bug": RuntimeError("boom"),
        }
        raise errors[kind]

    @app.post("/publish")
    async def publish(command: PublishWorkflow) -> dict[str, str]:
        return {"name": command.name}

    if max_bytes is not None:
        app.add_middleware(BodyLimit, max_bytes=max_bytes)
    return app


client = TestClient(_app(), raise_server_exceptions=False)


def test_every_error_class_has_its_status() -> None:
    assert [
        c.status
        for c in (
            BadRequest,
            Unauthorized,
            NotFound,
            Conflict,
            PayloadTooLarge,
            InvalidInput,
            RateLimited,
            NotAvailable,
        )
    ] == [400, 401, 404, 409, 413, 422, 429, 501]
    assert all(issubclass(c, CommandError) for c in (BadRequest, RateLimited, NotAvailable))


def test_errors_are_problem_json_with_the_right_headers() -> None:
    r = client.post("/raise/unauthorized")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "no key",
    }
    r = client.post("/raise/ratelimited")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert client.post("/raise/notfound").status_code == 404
    assert client.post("/raise/notavailable").status_code == 501


def test_an_invalid_workflow_lists_every_reason() -> None:
    r = client.post("/raise/workflow")
    assert r.status_code == 422
    assert r.json()["errors"] == ["the graph has a cycle: a -> b -> a"]
    assert "cycle" in r.json()["detail"]


def test_a_bug_is_a_problem_without_a_traceback() -> None:
    r = client.post("/raise/bug")
    assert r.status_code == 503
    assert "Traceback" not in r.text and r.json()["status"] == 503


def test_invalid_json_is_400_and_unknown_fields_422_in_plain_words() -> None:
    r = client.post("/publish", content=b'{"name": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = client.post(
        "/publish",
        json={"name": "x", "definition": {"nodes": [{"id": "a", "type": "noop"}]}, "colour": "red"},
    )
    assert r.status_code == 422
    assert "colour: unknown field (not allowed)" in r.json()["errors"]


def test_unknown_route_and_wrong_method_are_problems() -> None:
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = client.get("/publish")
    assert r.status_code == 405 and r.json()["title"] == "Method Not Allowed"
    assert "POST" in r.headers["allow"]


def test_body_over_the_limit_is_413_by_header_and_by_stream() -> None:
    r = client.post("/publish", content=b"x" * 101, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    def chunks():  # no Content-Length: the size is only known by counting
        for _ in range(10):
            yield b" " * 20

    r = client.post("/publish", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text


def test_request_hash_ignores_json_spelling_but_not_the_value_or_the_path() -> None:
    # The door parses the body once; the hash takes that value, not the text.
    def value(text: str) -> object:
        return loads_strict(text)

    a = request_hash("POST", "/v1/runs", value('{"workflow_id": "w", "input": {"a": 1, "b": 2}}'))
    b = request_hash("POST", "/v1/runs", value('{"input":{"b":2,"a":1},"workflow_id":"w"}'))
    assert a == b
    assert a != request_hash("POST", "/v1/runs", value('{"workflow_id": "w", "input": {"a": 2}}'))
    assert a != request_hash(
        "POST", "/v1/workflows", value('{"workflow_id": "w", "input": {"a": 1, "b": 2}}')
    )
    assert request_hash("POST", "/p", None) != request_hash("POST", "/p", {})  # no body is not {}


def test_keyed_ids_are_stable_per_tenant_and_key() -> None:
    assert keyed_id("run", "t1", "k") == keyed_id("run", "t1", "k")
    assert keyed_id("run", "t1", "k") != keyed_id("run", "t2", "k")
    assert keyed_id("run", "t1", "k") != keyed_id("submit", "t1", "k")
    assert keyed_id("run", "t1", None) is None


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.5  # one token comes every 0.5 s
    assert buckets.take("b") == 0.0  # tenants do not share a bucket
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    now[0] = 100.0  # idle time refills up to the burst, not beyond
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") > 0


# Without the body limit: a braced or urn:uuid: name makes a body over 100 bytes.
publisher = TestClient(_app(max_bytes=None), raise_server_exceptions=False)
DEFINITION = {"nodes": [{"id": "a", "type": "noop"}]}
UUID_SPELLINGS = [
    "0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d",
    "0B8A3C4E-1F2D-5A6B-8C9D-0E1F2A3B4C5D",
    "{0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d}",
    "urn:uuid:0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d",
    "0b8a3c4e1f2d5a6b8c9d0e1f2a3b4c5d",
    "0b8a-3c4e1f2d5a6b8c9d0e1f2a3b4c5d",  # dashes anywhere: uuid.UUID drops them all
]


@pytest.mark.parametrize("name", UUID_SPELLINGS)
def test_a_workflow_name_shaped_like_a_uuid_is_refused_with_the_reason(name: str) -> None:
    r = publisher.post("/publish", json={"name": name, "definition": DEFINITION})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        "name: a workflow name must not be shaped like a UUID "
        "(0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d): a UUID given for a workflow is read as its "
        "id; choose another name"
    ]


@pytest.mark.parametrize(
    "name", ["flow", "0b8a3c4e", "0b8a3c4e1f2d5a6b8c9d0e1f2a3b4c5", "g" * 32, "report-2026.v2"]
)
def test_other_names_are_published(name: str) -> None:
    r = publisher.post("/publish", json={"name": name, "definition": DEFINITION})
    assert r.status_code == 200 and r.json() == {"name": name}
