"""The command API's door (``command_api.door``): every value a /v1 command brings obeys the
rules of ``schemas.values``, and a refusal is a 4xx that names the path of the bad value,
never a 5xx.

Two apps, neither with a server, a database or a broker behind it:

- ``real``: the app as ``create_app`` makes it (its router, problem handlers, body limit).
  The caller is given (authentication needs PostgreSQL), and the pool, the bus and the CAS
  are ``Unreachable``: every refusal here must come before any of them is asked, so a case
  that got that far would answer 503 and fail.
- ``echo``: the door's route class on endpoints that take the real command models and give
  back what FastAPI built from the body: what passes the door, and how it arrives.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.requests import Request as StarletteRequest

from auth import Principal
from command_api import door, problems
from command_api.app import create_app
from command_api.context import CommandContext, principal_of
from command_api.door import DoorRoute, parsed_body
from command_api.errors import InvalidInput
from command_api.routes import router
from command_api.settings import CommandApiSettings
from infra.ratelimit import TokenBuckets
from run_submission import encode_record
from schemas import (
    Actor,
    CancelRun,
    DecideApproval,
    ForkRun,
    PatchSubmitted,
    PublishWorkflow,
    SubmitPatch,
    SubmitRun,
)
from schemas.envelope import build_event
from schemas.events import PatchSubmittedPayload


class Unreachable:
    """Where PostgreSQL, Kafka and MinIO would be: a refusal must not need them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the request got past the door to .{name}: it needs the stack")


def _real() -> TestClient:
    app = create_app()
    app.dependency_overrides[principal_of] = lambda: Principal(tenant="t", key_id="k")
    settings = CommandApiSettings()
    app.state.commands = CommandContext(
        pool=Unreachable(),  # type: ignore[arg-type]
        bus=Unreachable(),  # type: ignore[arg-type]
        cas=Unreachable(),  # type: ignore[arg-type]
        settings=settings,
        buckets=TokenBuckets(settings.rate_per_second, settings.rate_burst),
    )
    return TestClient(app, raise_server_exceptions=False)


real = _real()

# One valid body of every command, with the URL it goes to.
COMMANDS: dict[str, tuple[str, dict[str, Any]]] = {
    "publish": (
        "/v1/workflows",
        {
            "name": "w",
            "definition": {
                "nodes": [
                    {"id": "a", "type": "http", "config": {"url": "https://example.com"}},
                    {"id": "b", "type": "noop"},
                ],
                "edges": [{"from": "a", "to": "b"}],
            },
        },
    ),
    "submit": ("/v1/runs", {"workflow_id": "w", "version": "v", "input": {"items": [{"n": 1}]}}),
    "cancel": ("/v1/runs/r1/cancel", {"reason": "no longer needed"}),
    "patch": (
        "/v1/runs/r1/patches",
        {
            "patch": [{"op": "add", "path": "/nodes/-", "value": {"id": "c", "type": "noop"}}],
            "reason": "one more step",
            "base_version": "v",
        },
    ),
    "approve": ("/v1/runs/r1/approvals/gate", {"decision": "approve", "comment": "fine"}),
    "fork": ("/v1/runs/r1/forks", {"at": 3, "input": {"x": 1}}),
}

# Where a caller's string goes in each command, and the path a refusal names.
STRINGS: list[tuple[str, tuple[str | int, ...], str]] = [
    ("publish", ("definition", "nodes", 0, "config", "url"), "definition.nodes[0].config.url"),
    ("submit", ("input", "items", 0, "n"), "input.items[0].n"),
    ("cancel", ("reason",), "reason"),
    ("patch", ("patch", 0, "value", "id"), "patch[0].value.id"),
    ("patch", ("reason",), "reason"),
    ("patch", ("base_version",), "base_version"),
    ("approve", ("comment",), "comment"),
    ("fork", ("input", "x"), "input.x"),
    ("fork", ("at",), "at"),
]

# Where a caller's object goes, for a bad key name.
OBJECTS: list[tuple[str, tuple[str | int, ...], str]] = [
    ("publish", ("definition", "nodes", 0, "config"), "definition.nodes[0].config"),
    ("submit", ("input",), "input"),
    ("patch", ("patch", 0, "value"), "patch[0].value"),
    ("fork", ("input",), "input"),
]

# Where a caller's number goes.
NUMBERS: list[tuple[str, tuple[str | int, ...], str]] = [
    (
        "publish",
        ("definition", "nodes", 0, "config", "retries"),
        "definition.nodes[0].config.retries",
    ),
    ("submit", ("input", "items", 0, "n"), "input.items[0].n"),
    ("patch", ("patch", 0, "value", "n"), "patch[0].value.n"),
    ("fork", ("at",), "at"),
]

RAW = "@@raw@@"  # replaced, in the body's text, by bytes json.dumps would not write


def _body(command: str, where: tuple[str | int, ...] = (), value: Any = None) -> dict[str, Any]:
    body = copy.deepcopy(COMMANDS[command][1])
    if where:
        *parents, last = where
        target: Any = body
        for step in parents:
            target = target[step]
        target[last] = value
    return body


def _post(command: str, body: dict[str, Any], raw: bytes = b"", **headers: str) -> Any:
    # ASCII-escaped text: a lone surrogate travels as the JSON escape \ud800.
    text = json.dumps(body).encode()
    if raw:
        text = text.replace(json.dumps(RAW).encode(), raw)
    return real.post(
        COMMANDS[command][0],
        content=text,
        headers={"content-type": "application/json", **headers},
    )


def _refused(response: Any, status: int, *says: str) -> str:
    """The problem's detail, after checking the status, the media type and what it says."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    for words in says:
        assert words in detail, detail[:500]
    return detail


def test_every_command_as_written_passes_the_door_and_reaches_the_route() -> None:
    # The real app's routes need the stack past the door: that they get there is the point.
    for command in COMMANDS:
        with pytest.raises(AssertionError, match="got past the door"):
            TestClient(real.app).post(COMMANDS[command][0], json=_body(command))
    with pytest.raises(AssertionError, match="got past the door"):  # its body is optional
        TestClient(real.app).post("/v1/runs/r1/cancel")


def test_every_v1_route_passes_the_door() -> None:
    assert router.routes
    assert all(isinstance(route, DoorRoute) for route in router.routes)
    assert all(
        isinstance(route, DoorRoute)
        for route in real.app.router.routes
        if "/v1/" in getattr(route, "path", "")
    )


@pytest.mark.parametrize(("command", "where", "path"), STRINGS)
def test_a_nul_in_any_string_is_refused_at_its_path(
    command: str, where: tuple[str | int, ...], path: str
) -> None:
    detail = _refused(_post(command, _body(command, where, "a\x00b")), 422, f"{path}: ", "NUL")
    assert detail.startswith(path)


@pytest.mark.parametrize(("command", "where", "path"), STRINGS)
def test_a_lone_surrogate_is_refused_as_an_escape_and_as_raw_bytes(
    command: str, where: tuple[str | int, ...], path: str
) -> None:
    escaped = _post(command, _body(command, where, "a\ud800b"))
    _refused(escaped, 422, f"{path}: ", "lone surrogate")
    # The same code point as bytes (ED A0 80): not UTF-8, but read as the surrogate.
    raw = _post(command, _body(command, where, RAW), raw=b'"a\xed\xa0\x80b"')
    _refused(raw, 422, f"{path}: ", "lone surrogate")


@pytest.mark.parametrize(("command", "where", "path"), OBJECTS)
def test_a_bad_key_name_is_refused_at_its_object(
    command: str, where: tuple[str | int, ...], path: str
) -> None:
    _refused(_post(command, _body(command, where, {"k\x00": 1})), 422, f"{path}: ", "NUL")
    _refused(_post(command, _body(command, where, {"k\ud800": 1})), 422, f"{path}: ", "surrogate")
    long_key = {"k" * 1001: 1}
    _refused(_post(command, _body(command, where, long_key)), 422, f"{path}: ", "limit is 1000")


@pytest.mark.parametrize(("command", "where", "path"), NUMBERS)
@pytest.mark.parametrize(
    ("spelled", "status", "says"),
    [
        (b"NaN", 400, "NaN is not a JSON number"),
        (b"Infinity", 400, "Infinity is not a JSON number"),
        (b"-Infinity", 400, "-Infinity is not a JSON number"),
        (b"1e400", 422, "numbers must be finite"),
        (b"1" + b"0" * 400, 422, "401 digits"),
        (b"9" * 5000, 422, "5000 digits"),
    ],
)
def test_numbers_that_are_not_finite_64_bit_values_are_refused_at_their_path(
    command: str, where: tuple[str | int, ...], path: str, spelled: bytes, status: int, says: str
) -> None:
    r = _post(command, _body(command, where, RAW), raw=spelled)
    detail = _refused(r, status, f"{path}: ", says)
    if status == 400:
        assert detail.startswith("the body is not valid JSON: ")


def test_a_key_twice_in_one_object_is_not_json_we_read() -> None:
    r = real.post(
        "/v1/runs",
        content=b'{"workflow_id": "w", "input": {"items": [{"n": 1, "n": 2}]}}',
        headers={"content-type": "application/json"},
    )
    _refused(r, 400, 'not valid JSON: input.items[0]: the key "n" appears twice')
    r = real.post(
        "/v1/runs/r1/cancel",
        content=b'{"reason": "a", "reason": "b"}',
        headers={"content-type": "application/json"},
    )
    _refused(r, 400, 'body: the key "reason" appears twice')


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [65, 255])
def test_a_body_nested_past_64_levels_is_refused_where_it_goes_too_deep(levels: int) -> None:
    # The body is one level, the input the rest.
    body = _body("submit", ("input",), _nested(levels - 1))
    _refused(_post("submit", body), 422, "input[0]", "nests deeper than 64 levels")


def test_a_body_nested_100_000_deep_is_refused_not_a_crash() -> None:
    text = b'{"workflow_id": "w", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = real.post("/v1/runs", content=text, headers={"content-type": "application/json"})
    _refused(r, 422, "body: the JSON nests deeper than 64 levels")


MB = "x" * 1_000_000

# Every string field of every command, a million characters long: refused, naming the
# field or the limit it is over, before anything but the door and the models is asked.
MEGABYTE_FIELDS: list[tuple[str, tuple[str | int, ...], int, str]] = [
    ("publish", ("name",), 422, "name: String should match pattern"),
    ("publish", ("definition", "nodes", 0, "id"), 422, "definition.nodes[0].id: String should"),
    (
        "publish",
        ("definition", "nodes", 0, "type"),
        422,
        "nodes[0].type: String should have at most 64",
    ),
    ("publish", ("definition", "nodes", 0, "config", "url"), 413, "each run carries both"),
    (
        "publish",
        ("definition", "edges", 0, "from"),
        422,
        "edges[0].from: String should have at most 64",
    ),
    (
        "publish",
        ("definition", "edges", 0, "to"),
        422,
        "edges[0].to: String should have at most 64",
    ),
    (
        "publish",
        ("definition", "edges", 0, "when"),
        422,
        "edges[0].when: String should have at most 64",
    ),
    ("submit", ("workflow_id",), 422, "workflow_id: String should have at most 200"),
    ("submit", ("version",), 422, "version: String should have at most 200"),
    ("submit", ("input",), 413, "the run input is 1000002 bytes; the limit is 262144"),
    ("cancel", ("reason",), 422, "reason: String should have at most 2000"),
    ("patch", ("patch", 0, "value", "id"), 413, "the run.patch_submitted event would be"),
    ("patch", ("patch", 0, "path"), 413, "the run.patch_submitted event would be"),
    ("patch", ("reason",), 422, "reason: String should have at most 2000"),
    ("patch", ("base_version",), 422, "base_version: String should have at most 200"),
    ("approve", ("comment",), 422, "comment: String should have at most 4000"),
    ("fork", ("at",), 422, "at: Value error, a seq or position has at most 300 characters"),
    ("fork", ("input",), 413, "the run input is 1000002 bytes"),
]


@pytest.mark.parametrize(("command", "where", "status", "says"), MEGABYTE_FIELDS)
def test_a_million_character_string_in_any_field_is_refused_by_its_limit(
    command: str, where: tuple[str | int, ...], status: int, says: str
) -> None:
    _refused(_post(command, _body(command, where, MB)), status, says)


def test_a_million_character_key_is_refused_by_the_key_limit() -> None:
    body = _body("submit", ("input",), {MB: 1})
    _refused(_post("submit", body), 422, "input: a key of 1000000 characters; the limit is 1000")


def test_a_long_path_parameter_or_key_header_is_refused() -> None:
    # A URL has at most 64 KB in the test client (servers refuse far less: 8-16 KB).
    r = real.post(f"/v1/runs/{MB[:60_000]}/cancel", json={})
    _refused(r, 422, "run_id: a string of 60000 characters; the limit is 200")
    r = real.post(f"/v1/runs/r1/approvals/{MB[:60_000]}", json={"decision": "approve"})
    _refused(r, 422, "node_id: a string of 60000 characters")
    r = real.post("/v1/runs/r1/cancel", json={}, headers={"Idempotency-Key": MB})
    _refused(r, 400, "Idempotency-Key: the header must be 1-255 printable characters")


def test_a_definition_of_10_000_nodes_or_edges_is_refused_by_the_count() -> None:
    nodes = [{"id": f"n{i}", "type": "noop"} for i in range(10_000)]
    r = real.post("/v1/workflows", json={"name": "w", "definition": {"nodes": nodes}})
    _refused(r, 422, "definition.nodes: List should have at most 500 items")
    edges = [{"from": "n0", "to": f"n{i}"} for i in range(1, 10_001)]
    definition = {"nodes": nodes[:2], "edges": edges}
    r = real.post("/v1/workflows", json={"name": "w", "definition": definition})
    _refused(r, 422, "definition.edges: List should have at most 2000 items")


def test_every_broken_graph_rule_is_listed_up_to_a_bound() -> None:
    edges = [{"from": "a", "to": f"ghost{i}"} for i in range(2_000)]
    definition = {"nodes": [{"id": "a", "type": "noop"}], "edges": edges}
    r = real.post("/v1/workflows", json={"name": "w", "definition": definition})
    errors = r.json()["errors"]
    assert r.status_code == 422 and len(errors) == problems.MAX_REASONS + 1
    assert errors[-1] == f"... and {2_000 - problems.MAX_REASONS} more"
    assert "'ghost0', which does not exist" in errors[0]


def test_validation_errors_name_paths_as_the_door_does() -> None:
    body = _body("publish", ("definition", "nodes", 1, "id"), "1-not-an-id")
    _refused(_post("publish", body), 422, "definition.nodes[1].id: String should match pattern")
    r = real.post("/v1/runs/r1/approvals/not%20a%20node", json={"decision": "approve"})
    _refused(r, 422, "node_id: String should match pattern")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/v1/runs/a%00b/cancel", "run_id: a string contains a NUL character"),
        ("/v1/runs/a%ED%A0%80b/cancel", "run_id: the URL spells it with bytes that are not UTF-8"),
        ("/v1/runs/r1/approvals/a%00", "node_id: a string contains a NUL character"),
        ("/v1/runs/r1/approvals/%ED%A0%80", "node_id: the URL spells it"),
        ("/v1/runs/" + "a" * 201 + "/forks", "run_id: a string of 201 characters"),
    ],
)
def test_path_parameters_obey_the_same_rules(url: str, says: str) -> None:
    _refused(real.post(url, json={"decision": "approve", "at": 1}), 422, says)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("k" * 300, "this one has 300"),
        ("", "this one has 0"),
        ("a\x7fb", "not all of them printable"),
    ],
)
def test_a_malformed_idempotency_key_is_refused(key: str, says: str) -> None:
    r = real.post("/v1/runs/r1/cancel", json={}, headers={"Idempotency-Key": key})
    _refused(r, 400, "Idempotency-Key: ", says)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "says"),
    [
        (b"", "application/json", 422, "body: Field required"),
        (b"[]", "application/json", 422, "body: Input should be a valid dictionary"),
        (b'"run"', "application/json", 422, "body: Input should be a valid dictionary"),
        (b"null", "application/json", 422, "body: Input should be a valid dictionary"),
        (b'{"workflow_id": ', "application/json", 400, "not valid JSON: Expecting value"),
        (
            b'{"workflow_id": "\xff"}',
            "application/json",
            400,
            "not UTF-8 (byte 0xff at position 17)",
        ),
        (b'{"workflow_id": "w"}', "text/plain", 415, "Content-Type 'text/plain' was sent"),
        (b'{"workflow_id": "w"}', "", 415, "no Content-Type was sent"),
        (b'{"workflow_id": "w"}', "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
def test_a_body_that_is_no_command_is_refused_in_plain_words(
    content: bytes, content_type: str, status: int, says: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _refused(real.post("/v1/runs", content=content, headers=headers), status, says)


def test_the_door_stands_before_authentication() -> None:
    # No key, no database: a body that is no command is still told why.
    app = create_app()
    r = TestClient(app, raise_server_exceptions=False).post(
        "/v1/runs",
        content=b'{"workflow_id": "w\\u0000"}',
        headers={"content-type": "application/json"},
    )
    _refused(r, 422, "workflow_id: a string contains a NUL character")


def test_an_event_that_cannot_be_encoded_is_the_callers_422_not_a_503() -> None:
    # What the door would refuse, handed straight to the event encoder.
    actor = Actor(kind="user", id="k", tenant="t")
    for value in ("\ud800", _nested(300)):
        payload = PatchSubmittedPayload(patch=[{"op": "add", "value": value}], reason="r")
        event = build_event(PatchSubmitted, payload, aggregate_id="r1", actor=actor)
        with pytest.raises(
            InvalidInput, match=r"the run\.patch_submitted event cannot be encoded"
        ) as e:
            encode_record(event)
        assert e.value.detail.isascii()  # the answer itself can be encoded


# --- what passes the door, and how it arrives ----------------------------------------------

MODELS = {
    "publish": PublishWorkflow,
    "submit": SubmitRun,
    "cancel": CancelRun,
    "patch": SubmitPatch,
    "approve": DecideApproval,
    "fork": ForkRun,
}


def _echo() -> TestClient:
    app = FastAPI()
    problems.install(app)
    router = APIRouter(route_class=DoorRoute)
    for name, model in MODELS.items():

        async def endpoint(request: Request, command: Any) -> dict[str, Any]:
            return {
                "command": command.model_dump(mode="json", by_alias=True),
                "parsed": await parsed_body(request),
            }

        # The command's model, as a route of the command API declares it.
        endpoint.__annotations__ = {"request": Request, "command": model, "return": dict}
        router.add_api_route(f"/{name}/{{run_id}}", endpoint, methods=["POST"])
    app.include_router(router)
    return TestClient(app, raise_server_exceptions=False)


echo = _echo()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_as_written_arrives_as_the_same_command(command: str) -> None:
    body = _body(command)
    r = echo.post(f"/{command}/r1", json=body, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 200, r.text
    expected = MODELS[command].model_validate(body).model_dump(mode="json", by_alias=True)
    assert r.json() == {"command": expected, "parsed": body}


def test_the_body_is_parsed_once_and_never_by_starlette(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    strict = door.loads_strict

    def counted(data: bytes) -> Any:
        calls.append(data)
        return strict(data)

    async def never(self: StarletteRequest) -> Any:
        raise AssertionError("Starlette's json() parsed the body")

    monkeypatch.setattr(door, "loads_strict", counted)
    monkeypatch.setattr(StarletteRequest, "json", never)
    body = _body("submit")
    r = echo.post("/submit/r1", json=body, headers={"Idempotency-Key": "k1"})
    assert r.status_code == 200, r.text
    assert len(calls) == 1 and json.loads(calls[0]) == body


def test_values_at_the_limits_pass() -> None:
    # 64 levels in all (the body is the first), integers of 64 bits, keys of 1,000, a pair.
    body = _body("submit", ("input",), {"deep": _nested(62), "big": 2**63 - 1, "k" * 1000: "😀"})
    r = echo.post("/submit/r1", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["command"]["input"] == body["input"]
    assert echo.post("/submit/r1", json=_body("submit", ("input",), _nested(64))).status_code == 422
