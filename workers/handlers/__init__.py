"""The handler registry: node type -> handler.

A node type with no handler here has no worker. Stateless handlers are plain functions in
``HANDLERS``; handlers that hold clients (an ``httpx.AsyncClient``, an ``AsyncOpenAI``) are
objects with ``__call__``, built by ``open_handlers`` with their clients injected and closed
when the worker stops.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from openai import AsyncOpenAI

from infra.settings import get_settings
from workers.handlers.base import WAITING, Handler, Job
from workers.handlers.condition import condition
from workers.handlers.hitl import hitl
from workers.handlers.noop import noop
from workers.handlers.transform import transform
from workers.http.client import open_http_handler
from workers.settings import WorkerSettings

HANDLERS: dict[str, Handler] = {
    "noop": noop,
    "transform": transform,
    "condition": condition,
    "hitl": hitl,
}


async def open_handlers(settings: WorkerSettings, stack: AsyncExitStack) -> dict[str, Handler]:
    """Every handler this worker has, clients opened on ``stack`` (closed with it)."""
    handlers = dict(HANDLERS)
    handlers["http"] = await open_http_handler(settings, stack)
    handlers["agent"] = await _agent(settings, stack)
    handlers["wait_event"] = await _wait_event(stack)
    return handlers


async def _wait_event(stack: AsyncExitStack) -> Handler:
    from workers.handlers.wait_event import open_wait_event

    handler, pool = await open_wait_event(get_settings().postgres_dsn)
    stack.push_async_callback(pool.close)
    return handler


async def _agent(settings: WorkerSettings, stack: AsyncExitStack) -> Handler:
    from workers.agent.handler import AgentHandler  # here: workers.agent uses handlers.base
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
    )


__all__ = ["HANDLERS", "WAITING", "Handler", "Job", "open_handlers"]
