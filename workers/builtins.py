"""The built-in node types this engine's workers serve, and their handlers.

The simple ones (``noop``, ``transform``, ``condition``, ``hitl``) are declared with the
worker SDK's ``@node`` (``aob.nodes``), as a user's own types are; ``http`` and ``agent`` are
handler objects that hold clients (an ``httpx.AsyncClient``, an ``AsyncOpenAI``), built by
``open_handlers`` with their clients injected and closed when the worker stops. Either kind
takes the runtime's attempt (``workers.handlers.base.Job``).

They are not registered with the node-type registry: the engine knows them
(``schemas.workflow``), and ``python -m workers`` serves them through the SDK's serving code
(``aob.serving``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from aob.nodes import NodeDefinition, unique
from infra.settings import get_settings
from workers.handlers.base import Handler
from workers.handlers.condition import condition
from workers.handlers.hitl import hitl
from workers.handlers.noop import noop
from workers.handlers.transform import transform
from workers.http.client import open_http_handler
from workers.http.handler import HttpHandler
from workers.settings import WorkerSettings

BUILT_IN_NODES: list[NodeDefinition] = unique([noop, transform, condition, hitl])

HANDLERS: dict[str, Handler] = {d.name: d for d in BUILT_IN_NODES}


async def open_handlers(settings: WorkerSettings, stack: AsyncExitStack) -> dict[str, Handler]:
    """Every handler this worker has, clients opened on ``stack`` (closed with it)."""
    handlers = dict(HANDLERS)
    http = await open_http_handler(settings, stack)
    handlers["http"] = http
    handlers["agent"] = await open_agent(settings, stack, http)
    handlers["wait_event"] = await _wait_event(stack)
    handlers["subworkflow"] = await _subworkflow(stack)
    return handlers


async def _wait_event(stack: AsyncExitStack) -> Handler:
    from workers.handlers.wait_event import open_wait_event

    handler, pool = await open_wait_event(get_settings().postgres_dsn)
    stack.push_async_callback(pool.close)
    return handler


async def _subworkflow(stack: AsyncExitStack) -> Handler:
    from cas import ContentStore
    from workers.handlers.subworkflow import open_subworkflow

    deployment = get_settings()
    cas = ContentStore.from_settings(deployment)
    handler, close = await open_subworkflow(
        deployment.postgres_dsn, deployment.kafka_bootstrap, cas
    )
    stack.push_async_callback(close)
    return handler


async def open_agent(settings: WorkerSettings, stack: AsyncExitStack, http: HttpHandler) -> Handler:
    """The agent node's handler, its model client opened on ``stack``; its http tool and MCP
    servers go through ``http``, the http node's guarded client."""
    from openai import AsyncOpenAI

    from workers.agent.handler import AgentHandler
    from workers.agent.mcp_tools import McpConnector
    from workers.agent.node_tools import KafkaToolResults
    from workers.agent.tool_calls import KafkaToolHistory
    from workers.agent.toolbox import ToolServices
    from workers.agent.turns import KafkaTurnAnswers
    from workers.agent.verdicts import KafkaVerdicts

    # max_retries=0: the handler's own retry layer is the only one (workers.agent.calls).
    client = AsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "unset",
        max_retries=0,
    )
    await stack.enter_async_context(client)
    bootstrap = get_settings().kafka_bootstrap
    return AgentHandler(
        client,
        default_model=settings.agent_model,
        verdicts=KafkaVerdicts(bootstrap, settings.runs_topic),
        turns=KafkaTurnAnswers(bootstrap, settings.runs_topic),
        # The http tool and MCP servers go through the http node's guarded client.
        tools=ToolServices(
            http=http,
            history=KafkaToolHistory(bootstrap, settings.runs_topic),
            results=KafkaToolResults(bootstrap, settings.runs_topic),
            mcp=McpConnector(http.client),
        ),
    )
