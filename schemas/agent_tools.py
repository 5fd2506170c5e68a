"""An agent node's tools as its author names them, and the identity of each tool call.

``config.tools`` lists what the node's model may call besides ``finish`` (always offered):

    "patch_workflow"                       propose a patch of the run (``workers.agent.patching``)
    "http"                                 one HTTP request, through the http node's SSRF guard
    "<registered node type>"               run that node type once, its config the arguments
    {"mcp": {"url": "http://…/mcp",        the tools of an MCP server (streamable HTTP), offered
             "name": "docs",               as ``docs__<tool>``; ``tools`` keeps only those named
             "tools": ["search"]}}

Pure and shared: publishing checks the entries here (``schemas.compiler``), the worker reads
them here, and the coordinator reads which node types an agent names here. Whether a named
node type is registered is the registry's to say (``registered_type_names`` gives the names
to look up); the rules here are only the shape of the entry.

A tool call's id is a pure function of the run, the agent node, the tool, the canonical JSON
of its arguments and its ordinal among identical calls of the attempt: a retried attempt
whose model makes the same call again gets the same id, finds the call's recorded result
(``run.tool_called``) and does not make it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.canonical import canonical_json, sha256_hex
from schemas.envelope import deterministic_id
from schemas.workflow import PATCH_TOOL

FINISH_TOOL = "finish"
HTTP_TOOL = "http"
BUILT_IN_TOOLS: tuple[str, ...] = (PATCH_TOOL, HTTP_TOOL)
# The node-type name rule of the registry (node_types.registry.NODE_TYPE_NAME_PATTERN).
NODE_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
# An MCP server's name prefixes its tools' names: `docs__search`.
MCP_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")
MCP_SEPARATOR = "__"
# What a model provider takes as a tool name (OpenAI: 1 to 64 of these).
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOL_ENTRIES = 32
MAX_MCP_ALLOWED = 128
MAX_URL_CHARS = 2000
# Built-in node types that cannot be offered as tools: they are the agent's own machinery
# (agent), wait for a person (hitl) or are what the http tool already is.
NOT_TOOLS = frozenset({"agent", "hitl", "noop", "condition", "transform", "http", "finish"})


@dataclass(frozen=True)
class McpServer:
    """An MCP server an agent may call: its tools are offered as ``<name>__<tool>``."""

    name: str
    url: str
    allowed: tuple[str, ...] | None  # None: every tool the server lists

    def offers(self, tool: str) -> bool:
        return self.allowed is None or tool in self.allowed


@dataclass(frozen=True)
class ToolSet:
    """The tools one agent node allows (besides ``finish``), entries in the author's order."""

    builtins: tuple[str, ...] = ()  # patch_workflow, http
    node_types: tuple[str, ...] = ()  # registered node types
    mcp: tuple[McpServer, ...] = ()


class ToolEntryError(ValueError):
    """An entry of ``tools`` that is not one; the message says what is wrong with it."""


def parse_tools(value: Any) -> ToolSet:
    """``config.tools`` as a ToolSet; ToolEntryError naming every bad entry."""
    if value is None:
        return ToolSet()
    if not isinstance(value, list):
        raise ToolEntryError("'tools' must be a list of tool names and {\"mcp\": {...}} entries")
    if len(value) > MAX_TOOL_ENTRIES:
        raise ToolEntryError(f"'tools' lists {len(value)} entries, at most {MAX_TOOL_ENTRIES}")
    builtins: list[str] = []
    types: list[str] = []
    servers: list[McpServer] = []
    problems: list[str] = []
    for i, entry in enumerate(value):
        try:
            if isinstance(entry, str):
                if entry == FINISH_TOOL:
                    continue  # always offered; naming it is harmless
                if entry in BUILT_IN_TOOLS:
                    if entry not in builtins:
                        builtins.append(entry)
                elif entry in NOT_TOOLS:
                    raise ToolEntryError(
                        f"the {entry!r} node type cannot be a tool (tools: "
                        f"{', '.join(BUILT_IN_TOOLS)}, a registered node type, or an MCP server)"
                    )
                elif NODE_TYPE_NAME.match(entry):
                    if entry not in types:
                        types.append(entry)
                else:
                    raise ToolEntryError(
                        f"{entry!r} is not a tool: name {', '.join(BUILT_IN_TOOLS)}, a "
                        "registered node type (lower case letters, digits, - and _), or an "
                        'MCP server as {"mcp": {"url": ..., "name": ...}}'
                    )
            elif isinstance(entry, dict):
                servers.append(_mcp_server(entry))
            else:
                raise ToolEntryError('an entry must be a tool name or an {"mcp": {...}} object')
        except ToolEntryError as e:
            problems.append(f"tools[{i}]: {e}")
    names = [s.name for s in servers]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"tools: MCP server name {name!r} is used more than once")
    if problems:
        raise ToolEntryError("; ".join(problems))
    return ToolSet(tuple(builtins), tuple(types), tuple(servers))


def _mcp_server(entry: dict[str, Any]) -> McpServer:
    if set(entry) != {"mcp"} or not isinstance(entry["mcp"], dict):
        raise ToolEntryError('an object entry must be {"mcp": {"url": ..., "name": ...}}')
    spec = entry["mcp"]
    unknown = sorted(set(spec) - {"url", "name", "tools"})
    if unknown:
        raise ToolEntryError(f"MCP entry has unknown keys: {', '.join(unknown)}")
    name = spec.get("name")
    if not isinstance(name, str) or not MCP_NAME.match(name):
        raise ToolEntryError(
            f"MCP 'name' must be 1 to 24 lower case letters, digits, - or _, starting with a "
            f"letter, not {name!r}"
        )
    url = spec.get("url")
    why = url_refusal(url)
    if why is not None:
        raise ToolEntryError(f"MCP server {name!r}: {why}")
    assert isinstance(url, str)
    allowed = spec.get("tools")
    if allowed is not None:
        if (
            not isinstance(allowed, list)
            or not all(isinstance(t, str) and t for t in allowed)
            or len(allowed) > MAX_MCP_ALLOWED
        ):
            raise ToolEntryError(
                f"MCP server {name!r}: 'tools' must be a list of up to {MAX_MCP_ALLOWED} tool names"
            )
        for tool in allowed:
            if not TOOL_NAME.match(f"{name}{MCP_SEPARATOR}{tool}"):
                raise ToolEntryError(
                    f"MCP server {name!r}: tool {tool!r} would be offered as "
                    f"{name}{MCP_SEPARATOR}{tool}, which is not a tool name (letters, digits, "
                    "- and _, 64 at most)"
                )
    return McpServer(name, url, tuple(allowed) if allowed is not None else None)


def url_refusal(url: Any) -> str | None:
    """Why ``url`` cannot be an MCP server's URL before any DNS, or None. Where it points is
    judged at each connection by the http node's guard (``workers.http``), which no rule
    here replaces."""
    if not isinstance(url, str) or not url:
        return "'url' must be a non-empty string"
    if len(url) > MAX_URL_CHARS:
        return f"'url' is longer than {MAX_URL_CHARS} characters"
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)", url)
    if match is None:
        return f"'url' {url!r} is not an absolute http(s) URL"
    scheme, authority = match.group(1).lower(), match.group(2)
    if scheme not in ("http", "https"):
        return f"'url' scheme {scheme!r} is not http or https"
    if "@" in authority:
        return "'url' must not carry credentials (user:pass@)"
    host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
    if not host or host == "[]":
        return "'url' has no host"
    if any(c.isspace() for c in url):
        return "'url' must not contain white space"
    return None


def registered_type_names(tools: Any) -> list[str]:
    """The node types an agent's ``tools`` names (for the registry to check, and for the
    coordinator to copy their schemas into the agent's task); [] if ``tools`` is not valid."""
    try:
        return list(parse_tools(tools).node_types)
    except ToolEntryError:
        return []


def mcp_tool_name(server: str, tool: str) -> str:
    return f"{server}{MCP_SEPARATOR}{tool}"


# --- tool calls ------------------------------------------------------------------------


def arguments_digest(arguments: Any) -> str:
    """The sha256 of the arguments' canonical JSON: how a call's arguments are recorded."""
    return sha256_hex(canonical_json(arguments))


def call_id(run_id: str, node_id: str, tool: str, arguments: Any, ordinal: int) -> str:
    """The id of a tool call (see the module doc). ``ordinal`` counts from 0 the earlier
    calls of the same tool with the same arguments in the attempt."""
    return deterministic_id(
        "tool_call", run_id, node_id, tool, arguments_digest(arguments), str(ordinal)
    )


class ToolCallRecord(BaseModel):
    """A finished tool call as the coordinator keeps it and a retried attempt gets it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    call_id: str
    tool: str
    attempt: int = Field(ge=1, description="The attempt that made the call.")
    ok: bool
    result: Any = Field(None, description="The result itself when small (else result_ref).")
    result_ref: str | None = Field(None, description="CAS reference of a large result.")
    error: str | None = None


class ToolCallOrigin(BaseModel):
    """On a task sent to a node type's worker for an agent's tool call: whose call it is.
    The worker answers with ``run.tool_called`` instead of a node outcome."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    call_id: str
    node_id: str = Field(description="The agent node that called the tool.")
    attempt: int = Field(ge=1, description="The agent's attempt.")
    agent_task_id: str = Field(description="The agent attempt's task id.")
    tool: str
