"""An MCP server's tools as an agent's tools, over streamable HTTP (the ``mcp`` package).

Every HTTP request of the MCP client goes through ``McpConnector.client``: the http node's
own ``httpx.AsyncClient``, whose pinned transport asks the SSRF guard before each connection
(``workers.http``). There is no second guard: a server URL on a private, loopback or
link-local address is refused exactly as the http node would refuse it, unless the
deployment's allowlist names it.

At the attempt's start each server named in ``tools`` is connected, initialised and asked
for its tools (all pages); those the entry allows are offered as ``<server>__<tool>``, by
name, with the server's input schema as parameters. The sessions stay open until the
attempt ends, each in a task of its own (``McpSession`` says why). A server that cannot
be reached fails the attempt (retryable; not when the guard refused it: that will not
change by trying again): the model cannot be offered tools that are not known.

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
CLOSE_TIMEOUT_S = 5.0
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


class McpSession:
    """One server's session, owned by a task of its own.

    The MCP client runs its requests in a task group; a transport error (the guard's
    refusal, a lost connection) fails the group, which cancels the task that opened it. That
    task is this owner, never the agent's: the agent's calls reach the session through a
    queue, and a session that died answers every call, pending or new, with why.
    """

    def __init__(self, connector: McpConnector, server: McpServer) -> None:
        self.server = server
        self._connector = connector
        loop = asyncio.get_running_loop()
        self._listed: asyncio.Future[list[Any]] = loop.create_future()
        self._calls: asyncio.Queue[tuple[str, dict[str, Any], float, asyncio.Future[Any]] | None]
        self._calls = asyncio.Queue()
        self._current: asyncio.Future[Any] | None = None
        self._failure: BaseException | None = None
        self._owner = asyncio.create_task(self._own(), name=f"mcp-{server.name}")

    async def _own(self) -> None:
        try:
            client = self._connector.client
            async with (
                streamable_http_client(self.server.url, http_client=client) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                listed: list[Any] = []
                cursor = None
                for _ in range(MAX_PAGES):
                    page = await session.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.nextCursor
                    if not cursor:
                        break
                self._listed.set_result(listed)
                while (item := await self._calls.get()) is not None:
                    tool, args, timeout_s, answer = item
                    if answer.done():
                        continue  # the caller stopped waiting
                    self._current = answer
                    try:
                        result = await session.call_tool(
                            tool, args, read_timeout_seconds=timedelta(seconds=timeout_s)
                        )
                    except Exception as e:  # noqa: BLE001 - the caller is told
                        if not answer.done():
                            answer.set_exception(e)
                    else:
                        if not answer.done():
                            answer.set_result(result)
                    self._current = None
        except BaseException as e:
            self._fail(e)
            if isinstance(e, asyncio.CancelledError) and self._failure is e:
                raise

    def _fail(self, e: BaseException) -> None:
        self._failure = e
        waiting = [self._listed, self._current]
        while not self._calls.empty():
            item = self._calls.get_nowait()
            if item is not None:
                waiting.append(item[3])
        for future in waiting:
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"the MCP session ended: {describe(e)}"))
                future.exception()  # retrieved: nobody may be waiting any more

    async def tools(self, timeout_s: float) -> list[Any]:
        return await asyncio.wait_for(asyncio.shield(self._listed), timeout_s)

    async def call(self, tool: str, args: dict[str, Any], timeout_s: float) -> Any:
        if self._failure is not None:
            raise ConnectionError(f"the MCP session ended: {describe(self._failure)}")
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.put_nowait((tool, args, timeout_s, answer))
        try:
            return await asyncio.wait_for(asyncio.shield(answer), timeout_s + 1.0)
        finally:
            if not answer.done():
                answer.cancel()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    async def close(self) -> None:
        """End the session (its server is told), or give up on it after a few seconds."""
        self._calls.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._owner), CLOSE_TIMEOUT_S)
        except BaseException:  # noqa: BLE001 - closing; what went wrong was told already
            self._owner.cancel()
            await asyncio.gather(self._owner, return_exceptions=True)


def describe(e: BaseException) -> str:
    """What ended a session, in words: the guard's refusal if it was one."""
    refusal = refused_in(e)
    if refusal is not None:
        return str(refusal)
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}"


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
            session = McpSession(connector, server)
            stack.push_async_callback(session.close)
            await sessions._connect(session)
        return sessions

    def tools(self) -> Iterator[tuple[dict[str, Any], Run]]:
        yield from self._tools

    async def _connect(self, session: McpSession) -> None:
        server = session.server
        where = f"MCP server {server.name!r} ({shown(server.url)})"
        try:
            listed = await session.tools(CONNECT_TIMEOUT_S)
        except TimeoutError as e:
            raise NodeError(
                f"{where} did not list its tools within {CONNECT_TIMEOUT_S:g}s", retryable=True
            ) from e
        except Exception as e:
            failure = session.failure or e
            refusal = refused_in(failure)
            if refusal is not None:
                raise ConfigError(f"{where}: {refusal}") from e
            raise NodeError(
                f"could not list the tools of {where}: {describe(failure)}", retryable=True
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
            self._tools.append((definition, self._runner(session, tool.name)))

    def _runner(self, session: McpSession, tool: str) -> Run:
        server = session.server

        async def run(_cid: str, args: dict[str, Any]) -> ToolOutcome:
            left = self._deadline - DEADLINE_MARGIN_S - asyncio.get_running_loop().time()
            if left < 1.0:
                raise ToolFailed(f"no time left in this attempt to call {tool}")
            try:
                result = await session.call(tool, args, left)
            except TimeoutError as e:
                raise ToolFailed(
                    f"MCP server {server.name!r}, tool {tool!r}: no answer within {left:.0f}s"
                ) from e
            except Exception as e:
                why = describe(session.failure or e) if refused_in(e) is None else describe(e)
                raise ToolFailed(f"MCP server {server.name!r}, tool {tool!r}: {why}") from e
            value = result_value(result)
            if result.isError:
                text = value if isinstance(value, str) else str(value)
                raise ToolFailed(f"MCP tool {tool!r} answered with an error: {text}")
            return ToolOutcome(ok=True, result=value)

        return run
