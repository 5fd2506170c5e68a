"""command_api.request_metrics.RequestMetrics: every request counted by its route's template, method
and status, a failing handler as the 500 the server answers, and an unmatched path apart."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from command_api.metrics import REGISTRY
from command_api.request_metrics import RequestMetrics


def counted(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("aob_command_api_requests_total", labels) or 0.0


def timed(route: str, method: str) -> float:
    labels = {"route": route, "method": method}
    return REGISTRY.get_sample_value("aob_command_api_request_seconds_sum", labels) or 0.0


@pytest.fixture
def app() -> FastAPI:
    app = FastAPI()

    @app.post("/t/items/{item}", status_code=202)
    async def accept(item: str) -> dict[str, str]:
        return {"item": item}

    @app.get("/t/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestMetrics)
    return app


async def test_requests_are_counted_by_route_method_and_status(app: FastAPI) -> None:
    before = counted("/t/items/{item}", "POST", "202")
    missing = counted("unmatched", "GET", "404")
    failed = counted("/t/broken", "GET", "500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for item in ("a", "b"):
            assert (await client.post(f"/t/items/{item}")).status_code == 202
        assert (await client.get("/t/nowhere")).status_code == 404
        assert (await client.get("/t/broken")).status_code == 500
    assert counted("/t/items/{item}", "POST", "202") == before + 2  # one series, not one a path
    assert counted("unmatched", "GET", "404") == missing + 1
    assert counted("/t/broken", "GET", "500") == failed + 1
    assert timed("/t/items/{item}", "POST") > 0
