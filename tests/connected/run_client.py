"""A test's view of the running system: REST to act on runs, GraphQL to watch them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from infra.settings import Settings
from tests.helpers import eventually


class RunClient:
    """Publishes and submits through REST, and reads a run with ``run_query`` (a GraphQL
    query taking ``$id`` and ``$after``) until a check passes."""

    def __init__(self, rest: httpx.AsyncClient, gql: httpx.AsyncClient, run_query: str) -> None:
        self.rest, self.gql, self.run_query = rest, gql, run_query

    async def submit(
        self, name: str, definition: dict[str, Any], run_input: Any = None
    ) -> tuple[str, str]:
        """Publish ``definition`` as ``name`` and submit a run of it: (run id, position)."""
        r = await self.rest.post("/v1/workflows", json={"name": name, "definition": definition})
        assert r.status_code == 201, r.text
        r = await self.rest.post("/v1/runs", json={"workflow_id": name, "input": run_input})
        assert r.status_code == 202, r.text
        return r.json()["run_id"], r.json()["position"]

    async def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"query": query, "variables": variables or {}}
        data = (await self.gql.post("/graphql", json=body)).json()
        assert not data.get("errors"), data
        result: dict[str, Any] = data["data"]
        return result

    async def run(self, run_id: str, after: str | None = None) -> dict[str, Any]:
        run: dict[str, Any] | None = (
            await self.query(self.run_query, {"id": run_id, "after": after})
        )["run"]
        assert run is not None, f"run {run_id} is not in the read model"
        return run

    async def until(
        self,
        run_id: str,
        check: Callable[[dict[str, Any]], None],
        after: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """The run once ``check`` passes on it (read after ``after``, if given)."""

        async def attempt() -> dict[str, Any]:
            run = await self.run(run_id, after)
            check(run)
            return run

        return await eventually(attempt, timeout=timeout)


@asynccontextmanager
async def http_clients(
    services: Settings, api_key: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(REST, GraphQL) clients of the running system, authorised with ``api_key``."""
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx.AsyncClient(base_url=services.command_api_url, headers=headers, timeout=30) as rest,
        httpx.AsyncClient(base_url=services.query_api_url, headers=headers, timeout=60) as gql,
    ):
        yield rest, gql


def statuses(run: dict[str, Any]) -> dict[str, str]:
    """Node id -> status, from a run with ``nodes { id status }``."""
    return {n["id"]: n["status"] for n in run["nodes"]}
