"""An MCP server's tools as an agent's tools, over streamable HTTP (the ``mcp`` package).

Every HTTP request of the MCP client goes through ``McpConnector.client``: the http node's
own ``httpx.AsyncClient``, whose pinned transport asks the SSRF guard before each connection
(``workers.http``). There is no second guard: a server URL on a private, loopback or
link-local address is refused exactly as the http node would refuse it, unless the
deployment's allowlist names it.

At the attempt's start each server named in ``tools`` is connected, initialised and asked
for its tools (all pages); those the entry allows are offered as ``<server>__<tool>``, by
name, with the server's input schema as parameters. The sessions stay open until the
attempt ends. A server that cannot be reached fails the attempt (retryable; not when the
guard refused it: that will not change by trying again): the model cannot be offered tools
that are not known.

A call answers with the tool's structured content when it has some, else its text (the
text parts joined), else its content blocks as JSON; a result flagged ``isError`` is an
error for the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from schemas.agent_tools import TOOL_NAME, McpServer, mcp_tool_name
from workers.agent.tool_calls import ToolFailed, ToolOutcome
from workers.errors import ConfigError, NodeError
from workers.http.errors import Refused
from workers.http.responses import shown_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
MAX_PAGES = 20
MAX_DESCRIPTION_CHARS = 1000
DEADLINE_MARGIN_S = 1.0

Run = Callable[[str, dict[str, Any]], Awaitable[ToolOutcome]]


@dataclass(frozen=True)
class McpConnector:
    """The guarded client MCP sessions are opened with (``workers.http.build_client``)."""

    client: httpx.AsyncClient


def refused_in(exc: BaseException) -> Refused | None:
    """The guard's refusal somewhere in ``exc`` (its causes, an exception group's members):
    the MCP client wraps what its transport raises."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Refused):
            return e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        for linked in (e.__cause__, e.__context__):
            if linked is not None:
                stack.append(linked)
    return None


def shown(url: str) -> str:
    try:
        return shown_url(httpx.URL(url))
    except (httpx.InvalidURL, TypeError):
        return "(an invalid URL)"


def result_value(result: Any) -> Any:
    """What a ``CallToolResult`` answers (the module doc)."""
    if result.structuredContent is not None:
        return result.structuredContent
    blocks = [b.model_dump(mode="json", exclude_none=True) for b in result.content]
    if blocks and all(b.get("type") == "text" for b in blocks):
        return "\n".join(str(b.get("text", "")) for b in blocks)
    return blocks


class McpSessions:
    """The attempt's open sessions and the tools they offer."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._tools: list[tuple[dict[str, Any], Run]] = []

    @classmethod
    async def open(
        cls,
        connector: McpConnector,
        servers: tuple[McpServer, ...],
        stack: AsyncExitStack,
        *,
        deadline: float,
    ) -> McpSessions:
        sessions = cls(deadline)
        for server in servers:
            await sessions._connect(connector, server, stack)
        return sessions

    def tools(self) -> Iterator[tuple[dict[str, Any], Run]]:
        yield from self._tools

    async def _connect(
        self, connector: McpConnector, server: McpServer, stack: AsyncExitStack
    ) -> None:
        where = f"MCP server {server.name!r} ({shown(server.url)})"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                read, write, _ = await stack.enter_async_context(
                    streamable_http_client(server.url, http_client=connector.client)
                )
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                listed = []
                cursor = None
                for _ in range(MAX_PAGES):
                    page = await session.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.nextCursor
                    if not cursor:
                        break
        except Exception as e:
            refusal = refused_in(e)
            if refusal is not None:
                raise ConfigError(f"{where}: {refusal}") from e
            if isinstance(e, TimeoutError):
                raise NodeError(
                    f"{where} did not list its tools within {CONNECT_TIMEOUT_S:g}s",
                    retryable=True,
                ) from e
            raise NodeError(
                f"could not list the tools of {where}: {type(e).__name__}: {e}", retryable=True
            ) from e
        for tool in sorted(listed, key=lambda t: t.name):
            name = mcp_tool_name(server.name, tool.name)
            if not server.offers(tool.name):
                continue
            if not TOOL_NAME.match(name):
                log.warning("%s: tool %r cannot be offered as %r", where, tool.name, name)
                continue
            definition = {
                "type": "function",
                "function": {
                    "name": name,
                    "description": (tool.description or tool.name)[:MAX_DESCRIPTION_CHARS],
                    "parameters": tool.inputSchema or {"type": "object"},
                },
            }
            self._tools.append((definition, self._runner(session, server, tool.name)))

    def _runner(self, session: ClientSession, server: McpServer, tool: str) -> Run:
        async def run(_cid: str, args: dict[str, Any]) -> ToolOutcome:
            left = self._deadline - DEADLINE_MARGIN_S - asyncio.get_running_loop().time()
            if left < 1.0:
                raise ToolFailed(f"no time left in this attempt to call {tool}")
            try:
                result = await session.call_tool(
                    tool, args, read_timeout_seconds=timedelta(seconds=left)
                )
            except Exception as e:
                refusal = refused_in(e)
                why = str(refusal) if refusal is not None else f"{type(e).__name__}: {e}"
                raise ToolFailed(f"MCP server {server.name!r}, tool {tool!r}: {why}") from e
            value = result_value(result)
            if result.isError:
                text = value if isinstance(value, str) else str(value)
                raise ToolFailed(f"MCP tool {tool!r} answered with an error: {text}")
            return ToolOutcome(ok=True, result=value)

        return run
