"""The tools an agent attempt offers beyond ``finish`` and ``patch_workflow``, and running them.

- ``http``: one HTTP request, made by the http node's own handler (``workers.http``), so the
  same SSRF guard, allowlist, redirect rules and size cap apply. The arguments are the
  model's: they are never rendered as templates (a model must not read secrets through them).
- a registered node type: ``workers.agent.node_tools`` sends it to the type's workers.
- an MCP server's tools: ``workers.agent.mcp_tools``, connected through the same guarded
  client as the http node.

Each call goes through ``workers.agent.tool_calls.ToolCaller``: one ``run.tool_called`` per
call, a call that answered never made again. Definitions are listed in a fixed order
(http, node types by name, then each MCP server's tools by name), so the request's prefix
stays the same from one run to the next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.agent_tools import HTTP_TOOL, ToolSet
from schemas.values import ValueRefused, loads_strict
from workers.agent.mcp_tools import McpConnector, McpSessions
from workers.agent.node_tools import NodeToolRunner, ToolResults, node_type_definition
from workers.agent.tool_calls import ToolCaller, ToolFailed, ToolHistory, ToolOutcome
from workers.errors import ConfigError
from workers.handlers.base import Job

if TYPE_CHECKING:
    from workers.http.handler import HttpHandler

HTTP_DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": HTTP_TOOL,
        "description": "Make one HTTP request and get its answer as {status, headers, body} "
        "(a JSON body parsed). Only public addresses (and those the deployment allows) can "
        "be reached; redirects are followed. A status other than 2xx is an error.",
        "parameters": {
            "type": "object",
            "properties": {
                "method": {"type": "string", "description": "GET (default), POST, PUT, …"},
                "url": {"type": "string", "description": "An http(s) URL."},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "A string is sent as is; any other value as JSON."},
            },
            "required": ["url"],
        },
    },
}

Runner = Callable[[str, dict[str, Any]], Awaitable[ToolOutcome]]


@dataclass
class Toolbox:
    """One attempt's extra tools: their definitions and how to run each."""

    caller: ToolCaller
    definitions: list[dict[str, Any]] = field(default_factory=list)
    runners: dict[str, Runner] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.runners)

    async def call(self, name: str, arguments: str) -> str:
        """The model's answer for the call ``name(arguments)`` (arguments as JSON text)."""
        try:
            args = loads_strict(arguments or "{}")
        except ValueRefused as e:
            return (
                f"error: the arguments of {name} were refused, nothing was done: "
                f"{e.path or 'the arguments'}: {e.reason}. Call {name} again with corrected "
                "arguments."
            )
        except ValueError as e:
            return f"error: the arguments of {name} are not valid JSON ({e})"
        if not isinstance(args, dict):
            return f"error: the arguments of {name} must be a JSON object"
        runner = self.runners[name]
        return await self.caller.call(name, args, lambda cid: runner(cid, args))


@dataclass(frozen=True)
class ToolServices:
    """What the worker gives agents to run tools with; any may be absent (a test's)."""

    http: HttpHandler | None = None
    history: ToolHistory | None = None
    results: ToolResults | None = None
    mcp: McpConnector | None = None


async def open_toolbox(
    job: Job,
    tools: ToolSet,
    services: ToolServices,
    stack: AsyncExitStack,
    *,
    deadline: float,
    clock: Callable[[], float],
) -> Toolbox:
    """The attempt's toolbox; MCP sessions stay open on ``stack`` until the attempt ends.
    ConfigError when the node names a tool this worker cannot run."""
    box = Toolbox(ToolCaller(job, services.history, clock=clock))
    task = job.task
    if HTTP_TOOL in tools.builtins:
        http = services.http
        if http is None:
            raise ConfigError("this worker has no http client for the agent's http tool")
        box.definitions.append(HTTP_DEFINITION)

        async def run_http(cid: str, args: dict[str, Any]) -> ToolOutcome:
            key = f"{task.run_id}/{task.node_id}/{cid}"
            left = deadline - clock()
            if left <= 1.0:
                raise ToolFailed("no time left in this attempt for the request")
            return ToolOutcome(ok=True, result=await http.request(args, key, left - 1.0))

        box.runners[HTTP_TOOL] = run_http
    if tools.node_types:
        types = task.tool_types or {}
        missing = [t for t in tools.node_types if t not in types]
        if missing:
            raise ConfigError(
                f"the agent names node types that the run does not know as registered: "
                f"{', '.join(missing)} (register them before publishing the workflow)"
            )
        if services.results is None or job.send_task is None:
            raise ConfigError("this worker cannot call node types as tools")
        runner = NodeToolRunner(job, services.results, deadline=deadline, clock=clock)
        for name in sorted(tools.node_types):
            box.definitions.append(node_type_definition(name, types[name]))
            box.runners[name] = runner.runner(name, types[name])
    if tools.mcp:
        if services.mcp is None:
            raise ConfigError("this worker has no client for the agent's MCP tools")
        sessions = await McpSessions.open(services.mcp, tools.mcp, stack, deadline=deadline)
        for definition, run in sessions.tools():
            name = definition["function"]["name"]
            if name in box.runners:
                continue  # a server's tool named like a node type: the first one stays
            box.definitions.append(definition)
            box.runners[name] = run
    return box
