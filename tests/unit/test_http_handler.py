"""The http handler against loopback servers, without Kafka.

Every name is resolved by an in-memory map to loopback; the servers bind to loopback only.
Bodies that no loopback server here sends are answered by an in-memory transport, which
connects nowhere.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from schemas.events import NodeSucceeded
from schemas.tasks import NodeTask
from tests.http_support import LoopbackServer, MapResolver
from tests.worker_support import RunLog
from workers.errors import ConfigError
from workers.execute import TaskExecutor
from workers.handlers.base import Job
from workers.http import Guard, HttpHandler, build_client, parse_allowlist
from workers.http.errors import BadStatus, Refused, RequestFailed, ResponseTooLarge


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer().running() as s:
        yield s


@pytest.fixture
def canary() -> Iterator[LoopbackServer]:
    with LoopbackServer().running() as s:
        yield s


@pytest.fixture
async def client(server: LoopbackServer) -> AsyncIterator[httpx.AsyncClient]:
    resolver = MapResolver({"service.test": ["127.0.0.1"]})
    allow = parse_allowlist(f"service.test:{server.port},127.0.0.1:{server.port}")
    async with build_client(Guard(resolver, allow)) as c:
        yield c


def handler(client: httpx.AsyncClient, max_bytes: int = 10_000) -> HttpHandler:
    return HttpHandler(client, max_response_bytes=max_bytes, default_timeout_s=10)


def job(config: dict[str, Any], run_input: Any = None, attempt: int = 1) -> Job:
    task = NodeTask(
        task_id="t-1",
        run_id="run-1",
        tenant="t",
        node_id="fetch",
        node_type="http",
        attempt=attempt,
        config=config,
        input=run_input,
    )
    return Job(task, {"input": run_input, "nodes": {}})


def svc(server: LoopbackServer, path: str) -> str:
    return f"http://service.test:{server.port}{path}"


async def test_pinned_transport_connects_to_the_checked_address_with_the_original_host(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    out = await handler(client)(job({"url": svc(server, "/echo")}))
    assert out["status"] == 200
    assert out["body"]["headers"]["host"] == f"service.test:{server.port}"
    assert server.seen[-1].peer == "127.0.0.1"


async def test_templated_method_url_headers_and_json_body(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    config = {
        "method": "{{ input.verb }}",
        "url": "http://service.test:{{ input.port }}/echo",
        "headers": {"X-Item": "{{ input.item }}", "X-N": 3},
        "body": {"item": "{{ input.item }}", "n": "{{ input.n }}"},
    }
    out = await handler(client)(
        job(config, {"verb": "post", "port": server.port, "item": "a", "n": 2})
    )
    echoed = out["body"]
    assert echoed["method"] == "POST"
    assert echoed["headers"]["x-item"] == "a"
    assert echoed["headers"]["x-n"] == "3"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"].replace(" ", "") == '{"item":"a","n":2}'


async def test_string_body_is_sent_as_is(client: httpx.AsyncClient, server: LoopbackServer) -> None:
    config = {"method": "PUT", "url": svc(server, "/echo"), "body": "x={{ input }}"}
    out = await handler(client)(job(config, 5))
    assert out["body"]["body"] == "x=5"


async def test_idempotency_key_is_sent_unless_the_author_set_one(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    out = await handler(client)(job({"url": svc(server, "/echo")}, attempt=3))
    assert out["body"]["headers"]["idempotency-key"] == "run-1/fetch/3"
    own = {"url": svc(server, "/echo"), "headers": {"idempotency-key": "mine"}}
    out = await handler(client)(job(own))
    assert out["body"]["headers"]["idempotency-key"] == "mine"


async def test_json_text_and_binary_bodies(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    h = handler(client)
    out = await h(job({"url": svc(server, "/json")}))
    assert out["body"] == {"items": [1, 2, 3]}
    assert out["headers"]["content-type"] == "application/json"
    assert (await h(job({"url": svc(server, "/text")})))["body"] == "héllo"
    binary = (await h(job({"url": svc(server, "/bin")})))["body"]
    assert binary["content_type"] == "image/png"
    assert base64.b64decode(binary["base64"]) == b"\x89PNG\r\n\x1a\n\x00\xff"


async def test_response_size_is_capped(client: httpx.AsyncClient, server: LoopbackServer) -> None:
    h = handler(client, max_bytes=1000)
    assert len((await h(job({"url": svc(server, "/big?n=1000")})))["body"]) == 1000
    with pytest.raises(ResponseTooLarge, match="limit of 1000 bytes") as caught:
        await h(job({"url": svc(server, "/big?n=1001")}))
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (422, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (503, True),
    ],
)
async def test_status_classification(
    client: httpx.AsyncClient, server: LoopbackServer, status: int, retryable: bool
) -> None:
    with pytest.raises(BadStatus) as caught:
        await handler(client)(job({"url": svc(server, f"/status/{status}?token=secret")}))
    reason = str(caught.value)
    assert caught.value.retryable is retryable
    assert f"GET http://service.test:{server.port}/status/{status}?…" in reason
    assert f"answered {status}" in reason
    assert "nope" in reason
    assert "secret" not in reason
    if status in (429, 503):
        assert "Retry-After: 7" in reason


async def test_redirects_within_the_allowlist_up_to_five(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    out = await handler(client)(job({"url": svc(server, "/chain/4")}))  # 5 redirects
    assert out["body"] == {"items": [1, 2, 3]}
    assert [s.path.split("?")[0] for s in server.seen][-1] == "/json"


async def test_a_sixth_redirect_is_refused(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    with pytest.raises(Refused, match=r"redirect 6 to .* more than 5 redirects"):
        await handler(client)(job({"url": svc(server, "/chain/5")}))
    assert not any(s.path == "/json" for s in server.seen)


async def test_a_post_redirected_by_302_turns_into_get(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    out = await handler(client)(
        job({"method": "POST", "url": svc(server, "/to?url=/echo"), "body": "b"})
    )
    assert out["body"]["method"] == "GET"


async def test_redirect_into_loopback_is_refused_and_the_target_sees_nothing(
    client: httpx.AsyncClient, server: LoopbackServer, canary: LoopbackServer
) -> None:
    for target in (canary.base + "/", f"http://localhost:{canary.port}/", "file:///etc/passwd"):
        with pytest.raises(Refused, match="refused: redirect 1 to "):
            await handler(client)(job({"url": svc(server, f"/to?url={target}")}))
    assert canary.seen == []


async def test_a_target_outside_the_allowlist_is_refused_before_any_connection(
    client: httpx.AsyncClient, canary: LoopbackServer
) -> None:
    with pytest.raises(Refused, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        await handler(client)(job({"url": canary.base + "/"}))
    with pytest.raises(Refused, match=r"127\.0\.0\.1 \(from 2130706433\) is a loopback"):
        await handler(client)(job({"url": f"http://2130706433:{canary.port}/"}))
    assert canary.seen == []


async def test_bad_config_fails_the_node(client: httpx.AsyncClient) -> None:
    h = handler(client)
    with pytest.raises(ConfigError, match="url"):
        await h(job({"method": "GET"}))
    with pytest.raises(ConfigError, match="method"):
        await h(job({"method": "GE T", "url": "http://service.test/"}))
    with pytest.raises(ConfigError, match="timeout_s"):
        await h(job({"url": "http://service.test/", "timeout_s": -1}))


async def test_connection_failure_is_retryable(client: httpx.AsyncClient) -> None:
    # A port on the allowlist with no server behind it (the fixture's server is elsewhere).
    resolver = MapResolver({})
    free = LoopbackServer()
    with free.running():
        port = free.port
    async with build_client(Guard(resolver, parse_allowlist(f"127.0.0.1:{port}"))) as c:
        with pytest.raises(RequestFailed) as caught:
            await handler(c)(job({"url": f"http://127.0.0.1:{port}/"}))
    assert caught.value.retryable


async def test_https_keeps_the_name_for_sni_and_gets_a_pool_per_name() -> None:
    # In-memory inner transports: nothing is connected; the requests they get are recorded.
    from workers.http.transport import PinnedTransport

    got: list[httpx.Request] = []
    made: list[httpx.MockTransport] = []

    def factory() -> httpx.AsyncBaseTransport:
        made.append(httpx.MockTransport(lambda r: got.append(r) or httpx.Response(204)))
        return made[-1]

    resolver = MapResolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    allow = parse_allowlist("a.test:443,b.test:443,a.test:80")
    transport = PinnedTransport(Guard(resolver, allow), factory)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as c:
        await c.get("https://a.test/x")
        await c.get("https://b.test/y")
        await c.get("https://a.test/z")
        await c.get("http://a.test/w")
    assert [str(r.url) for r in got] == [
        "https://127.0.0.1/x",
        "https://127.0.0.1/y",
        "https://127.0.0.1/z",
        "http://127.0.0.1/w",
    ]
    assert [r.headers["host"] for r in got] == ["a.test", "b.test", "a.test", "a.test"]
    assert [r.extensions.get("sni_hostname") for r in got] == ["a.test", "b.test", "a.test", None]
    assert len(made) == 3  # plain http, then one TLS pool for a.test and one for b.test


async def test_the_next_checked_address_is_tried_when_one_does_not_connect(
    server: LoopbackServer,
) -> None:
    # 127.0.0.2 is loopback too, but the server listens on 127.0.0.1 only: the first answer
    # refuses the connection, the second one serves.
    resolver = MapResolver({"two.test": ["127.0.0.2", "127.0.0.1"]})
    async with build_client(Guard(resolver, parse_allowlist(f"two.test:{server.port}"))) as c:
        out = await handler(c)(job({"url": f"http://two.test:{server.port}/json"}))
    assert out["status"] == 200
    assert server.seen[-1].path == "/json"


async def test_reasons_never_show_credentials_or_queries(
    client: httpx.AsyncClient, server: LoopbackServer
) -> None:
    target = f"http://user:hunter2@service.test:{server.port}/json?token=s3cret"
    with pytest.raises(Refused, match="credentials") as caught:
        await handler(client)(job({"url": svc(server, f"/to?url={target.replace('?', '%3F')}")}))
    assert "hunter2" not in str(caught.value)
    assert "s3cret" not in str(caught.value)


# --- bodies that AOB cannot hold as they came ---------------------------------------------


def answering(content_type: str, body: bytes) -> httpx.AsyncClient:
    """A client whose every request gets this 200 answer, in memory: nothing is connected."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


DEEP_JSON = b"[" * 300 + b"]" * 300


@pytest.mark.parametrize(
    "body",
    [
        DEEP_JSON,
        b'{"name": "a\\u0000b"}',  # a NUL, escaped
        b'{"name": "a\\ud800b"}',  # a lone surrogate, escaped
        b'{"a": 1, "a": 2}',
        b'{"n": NaN}',
        b'{"n": 1e400}',
        b'{"n": 18446744073709551616}',
    ],
)
async def test_a_json_body_that_breaks_the_value_rules_is_kept_as_its_text(body: bytes) -> None:
    async with answering("application/json", body) as client:
        out = await handler(client)(job({"url": "http://service.test/"}))
    assert out["body"] == body.decode()  # every character, escapes as escapes


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"a\x00b"),  # a NUL byte: no string may hold it
        ("text/plain; charset=utf-7", b"+2AA-"),  # decodes to a lone surrogate
        ("application/json", b'{"a": "\xff"}'),  # not UTF-8 at all
    ],
)
async def test_text_that_no_string_may_hold_is_kept_as_base64(
    content_type: str, body: bytes
) -> None:
    async with answering(content_type, body) as client:
        out = await handler(client)(job({"url": "http://service.test/"}))
    assert base64.b64decode(out["body"]["base64"]) == body
    assert out["body"]["content_type"] == content_type.partition(";")[0]


async def test_a_deep_json_body_makes_a_node_that_succeeds_with_its_text() -> None:
    log = RunLog()
    async with answering("application/json", DEEP_JSON) as client:
        executor = TaskExecutor(
            events=log, store=NoStore(), handlers={"http": handler(client)}, worker_name="t"
        )
        await executor.run(job({"url": "http://service.test/"}).task)
    (succeeded,) = log.outcomes
    assert isinstance(succeeded, NodeSucceeded)
    assert succeeded.payload.output["body"] == DEEP_JSON.decode()


class NoStore:
    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        raise AssertionError("a small output is not stored")

    async def get_json(self, ref: str) -> Any:
        raise AssertionError("no upstream output here")


# --- redirects to another origin ----------------------------------------------------------


class Redirecting:
    """In memory: ``redirects`` maps a URL to (status, Location); anything else answers 200
    with the headers it was sent. Every request is kept."""

    def __init__(self, redirects: dict[str, tuple[int, str]]) -> None:
        self.redirects = redirects
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        hop = self.redirects.get(str(request.url))
        if hop is not None:
            return httpx.Response(hop[0], headers={"location": hop[1]})
        return httpx.Response(200, json={"headers": dict(request.headers)})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


CONFIG_HEADERS = {
    "Authorization": "Bearer a",
    "X-Api-Key": "k-123",
    "Cookie": "c=1",
    "X-Tenant-Token": "t-9",
    "Accept": "application/json",
    "User-Agent": "aob-test",
    "Content-Type": "application/json",
}


def secret_job(config: dict[str, Any], secrets: dict[str, str]) -> Job:
    plain = job(config)
    return Job(plain.task, plain.context, None, secrets)


async def test_a_cross_origin_redirect_keeps_only_the_safe_headers() -> None:
    target = Redirecting({"https://a.test/go": (302, "https://b.test/land")})
    async with target.client() as client:
        await handler(client)(job({"url": "https://a.test/go", "headers": CONFIG_HEADERS}))
    first, second = target.seen
    assert first.headers["x-api-key"] == "k-123"
    assert set(second.headers) >= {"accept", "user-agent", "idempotency-key"}
    for dropped in ("authorization", "x-api-key", "cookie", "x-tenant-token"):
        assert dropped not in second.headers, dropped
    assert second.headers["idempotency-key"] == "run-1/fetch/1"


async def test_a_same_origin_redirect_keeps_every_header() -> None:
    target = Redirecting({"https://a.test/go": (302, "/land")})
    async with target.client() as client:
        await handler(client)(job({"url": "https://a.test/go", "headers": CONFIG_HEADERS}))
    assert target.seen[1].headers["x-api-key"] == "k-123"
    assert target.seen[1].headers["authorization"] == "Bearer a"


@pytest.mark.parametrize("location", ["http://a.test/land", "http://b.test/land"])
async def test_a_redirect_from_https_to_http_is_refused(location: str) -> None:
    target = Redirecting({"https://a.test/go": (307, location)})
    async with target.client() as client:
        with pytest.raises(Refused, match="from https to http"):
            await handler(client)(job({"url": "https://a.test/go", "headers": CONFIG_HEADERS}))
    assert len(target.seen) == 1


async def test_a_safe_header_holding_a_secret_stays_at_its_origin() -> None:
    target = Redirecting({"https://a.test/go": (302, "https://b.test/land")})
    config = {"url": "https://a.test/go", "headers": {"User-Agent": "ua tok-s3", "Accept": "*/*"}}
    async with target.client() as client:
        await handler(client)(secret_job(config, {"UA": "tok-s3"}))
    assert target.seen[0].headers["user-agent"] == "ua tok-s3"
    assert "user-agent" not in target.seen[1].headers or "tok-s3" not in str(target.seen[1].headers)
    assert target.seen[1].headers["accept"] == "*/*"


async def test_a_body_holding_a_secret_does_not_follow_a_307_to_another_origin() -> None:
    target = Redirecting({"https://a.test/go": (307, "https://b.test/land")})
    config = {"method": "POST", "url": "https://a.test/go", "body": {"token": "tok-s3"}}
    async with target.client() as client:
        with pytest.raises(Refused, match="body holds a secret"):
            await handler(client)(secret_job(config, {"T": "tok-s3"}))
    assert len(target.seen) == 1


async def test_a_secret_header_reaches_the_target_and_its_echo_is_masked() -> None:
    class OneSecret:
        async def values(self, tenant: str, names: Any) -> dict[str, str]:
            return {"K": "tok-echo-77"}

    log = RunLog()
    target = Redirecting({})
    config = {"url": "https://a.test/echo", "headers": {"X-Api-Key": "{{ secrets.K }}"}}
    async with target.client() as client:
        executor = TaskExecutor(
            events=log,
            store=NoStore(),
            handlers={"http": handler(client)},
            worker_name="t",
            secrets=OneSecret(),
        )
        await executor.run(job(config).task)
    assert target.seen[0].headers["x-api-key"] == "tok-echo-77"
    (succeeded,) = log.outcomes
    assert isinstance(succeeded, NodeSucceeded)
    assert succeeded.payload.output["body"]["headers"]["x-api-key"] == "[secret:K]"
    assert "tok-echo-77" not in succeeded.model_dump_json()
