"""cli.bench_submitter: a submission the command API holds back with 429 is sent again after
its Retry-After, and counted; any other refusal stops the bench with the API's reason."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from cli import CLIError
from cli.bench_submitter import Submitter


class FakeCommandApi:
    """``POST /v1/runs`` on loopback, answering 429 ``throttle`` times, then 202."""

    def __init__(self, throttle: int, refuse_with: int | None = None) -> None:
        self.throttle = throttle
        self.refuse_with = refuse_with
        self.posts = 0

    async def runs(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.refuse_with is not None:
            return web.json_response(
                {"title": "bad", "detail": "no such workflow"}, status=self.refuse_with
            )
        if self.posts <= self.throttle:
            return web.json_response(
                {"title": "Too Many Requests", "detail": "this process allows 500 a second"},
                status=429,
                headers={"Retry-After": "0"},
            )
        return web.json_response({"run_id": f"run-{self.posts}"}, status=202)


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(api: FakeCommandApi) -> str:
        app = web.Application()
        app.router.add_post("/v1/runs", api.runs)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_throttled_submission_is_sent_again_and_counted(serve: object) -> None:
    api = FakeCommandApi(throttle=3)
    url = await serve(api)  # type: ignore[operator]
    async with Submitter(url, "key", 4) as submitter:
        run_id = await submitter.submit({"workflow_id": "chain3", "input": {}})
    assert run_id == "run-4"
    assert (api.posts, submitter.throttled) == (4, 3)


async def test_another_refusal_stops_with_the_apis_reason(serve: object) -> None:
    api = FakeCommandApi(throttle=0, refuse_with=404)
    url = await serve(api)  # type: ignore[operator]
    async with Submitter(url, "key", 4) as submitter:
        with pytest.raises(CLIError, match="no such workflow"):
            await submitter.submit({"workflow_id": "nope", "input": {}})
    assert (api.posts, submitter.throttled) == (1, 0)
