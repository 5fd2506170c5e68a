"""The CLI's client of AOB's own APIs: REST for commands, GraphQL for reads.

Errors come back as :class:`cli.CLIError` carrying the server's problem detail, so every
command prints one readable line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from cli import CLIError
from infra.settings import Settings
from run_model import RUN_FINISHED

TERMINAL_RUN_STATUSES = RUN_FINISHED  # the run model's, as GraphQL spells them

# A map node's items, asked for only when a run has one (``runs show``).
MAP_ITEMS_QUERY = """
query CliMapItems($id: ID!, $node: String!, $offset: Int!) {
  run(id: $id) {
    mapItems(node: $node, first: 1000, offset: $offset) {
      index status attempts output outputRef error
    }
  }
}
"""

RUN_QUERY = """
query CliRun($id: ID!, $after: String) {
  run(id: $id, after: $after) {
    id status workflowId workflowName version error input output createdAt
    parent { id } parentNodeId depth
    nodes {
      id type status attempts startedAt finishedAt output outputRef error itemCount childRunId
    }
    approvals { nodeId status prompt decision decidedBy }
    patches {
      id status reason fromVersion toVersion rejectedReasons submittedBy { kind id } nodeId
      addedNodes removedNodes changedNodes
    }
    versions { seq version patchId fromVersion createdAt }
    events(first: 500) { edges { node { seq type occurredAt actor payload } } }
  }
}
"""


def api_key_from_env() -> str:
    key = os.environ.get("AOB_API_KEY")
    if not key:
        raise CLIError(
            "no API key: create one with `aob keys create --tenant NAME` and "
            "`export AOB_API_KEY=<key>`"
        )
    return key


def problem_detail(response: httpx.Response) -> str:
    return problem_text(response.status_code, response.text)


def problem_text(status: int, text: str) -> str:
    """A refused call as the CLI says it: the problem's detail, else the body."""
    try:
        body = json.loads(text)
    except ValueError:
        return f"HTTP {status}: {text[:300]}"
    if isinstance(body, dict) and body.get("detail"):
        return f"HTTP {status}: {body['detail']}"
    return f"HTTP {status}: {body}"


class ApiClient:
    def __init__(self, settings: Settings, api_key: str, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        self.rest = httpx.AsyncClient(
            base_url=settings.command_api_url, headers=headers, timeout=timeout
        )
        self.gql = httpx.AsyncClient(
            base_url=settings.query_api_url, headers=headers, timeout=timeout
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rest.aclose()
        await self.gql.aclose()

    async def command(self, path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
        return await self.call("POST", path, body, expect)

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200
    ) -> dict[str, Any]:
        """A REST call; its JSON answer, or a CLIError with the problem's detail."""
        try:
            response = await self.rest.request(method, path, json=body)
        except httpx.ConnectError as e:
            raise CLIError(
                f"the command API at {self.rest.base_url} is not reachable ({e}); run `aob up`"
            ) from e
        if response.status_code != expect:
            raise CLIError(problem_detail(response))
        return response.json()  # type: ignore[no-any-return]

    async def query(self, query: str, **variables: Any) -> dict[str, Any]:
        try:
            response = await self.gql.post(
                "/graphql", json={"query": query, "variables": variables}
            )
        except httpx.ConnectError as e:
            raise CLIError(
                f"the query API at {self.gql.base_url} is not reachable ({e}); run `aob up`"
            ) from e
        if response.status_code != 200:
            raise CLIError(problem_detail(response))
        body = response.json()
        if body.get("errors"):
            raise CLIError(body["errors"][0].get("message", "query failed"))
        return body["data"]  # type: ignore[no-any-return]

    async def run(self, run_id: str, after: str | None = None) -> dict[str, Any]:
        run = (await self.query(RUN_QUERY, id=run_id, after=after))["run"]
        if run is None:
            raise CLIError(f"run {run_id} not found (or not visible to this API key's tenant)")
        for node in run["nodes"]:  # a map node's items: a page of 1,000 at a time
            if node.get("itemCount") is None:
                continue
            node["items"] = []
            while len(node["items"]) < node["itemCount"]:
                page = await self.query(
                    MAP_ITEMS_QUERY, id=run_id, node=node["id"], offset=len(node["items"])
                )
                items = (page["run"] or {}).get("mapItems") or []
                if not items:
                    break
                node["items"].extend(items)
        return run  # type: ignore[no-any-return]

    async def wait_for_run(
        self,
        run_id: str,
        position: str | None,
        timeout: float,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        until: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Poll the read side until the run is COMPLETED, FAILED or CANCELLED (or has one
        of the statuses in ``until``, e.g. WAITING)."""
        started = time.monotonic()
        run = await self.run(run_id, position)
        while run["status"] not in TERMINAL_RUN_STATUSES | until:
            if time.monotonic() - started > timeout:
                raise CLIError(
                    f"run {run_id} is still {run['status']} after {timeout:.0f}s; "
                    "see `aob status` and the logs under the stack's home"
                )
            if on_progress:
                on_progress(run)
            await asyncio.sleep(0.2)
            run = await self.run(run_id)
        return run
