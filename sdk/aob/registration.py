"""A custom worker's two duties towards the node-type registry: register its types when it
starts, and keep saying that it serves them while it runs.

- Registration goes through the command API, as any client's would: ``PUT
  /v1/node-types/{name}`` with the worker's API key (``AOB_API_KEY``, scope ``publish``), the
  type's config and output JSON Schemas and its description. It is idempotent: a worker that
  starts again replaces its types' schemas with its code's. The answers name the key's tenant,
  which owns the types. A refusal (a name that a built-in or another tenant holds, a key
  without the scope) stops the worker with the API's reason: serving a type that the engine
  will not route to it would only look like working.
- Liveness is a row per type and worker in PostgreSQL (``node_types.registry``), touched every
  ``BEAT_INTERVAL_S``; a type is served while a worker touched it lately, which GraphQL's
  ``nodeTypes`` shows. A worker that stops cleanly removes its rows (``gone``); a killed one
  simply stops beating. A beat that fails (PostgreSQL restarting) is logged and tried again
  at the next interval: the worker goes on serving meanwhile.

The built-in types are not registered: the engine knows them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from aob.nodes import NodeDefinition

log = logging.getLogger(__name__)

BEAT_INTERVAL_S = 3.0
API_KEY_VARIABLE = "AOB_API_KEY"


class RegistrationRefused(Exception):
    """The command API refused (or could not take) a type: the message says why."""


def registration_body(definition: NodeDefinition) -> dict[str, Any]:
    """What ``PUT /v1/node-types/{name}`` takes for ``definition``."""
    return {
        "config_schema": definition.config_schema,
        "output_schema": definition.output_schema,
        "description": definition.description,
    }


async def register(
    definitions: Sequence[NodeDefinition],
    *,
    api_url: str,
    api_key: str | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """Register every type of ``definitions`` for the tenant of ``api_key``; that tenant."""
    if not api_key:
        raise RegistrationRefused(
            f"{API_KEY_VARIABLE} is not set: the worker registers its node types with an API "
            "key of your tenant that has the 'publish' scope (aob keys create --tenant <name>)"
        )
    tenants: set[str] = set()
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(
        base_url=api_url, headers=headers, timeout=30.0, transport=transport
    ) as client:
        for d in definitions:
            path = f"/v1/node-types/{d.name}"
            try:
                answer = await client.put(path, json=registration_body(d))
            except httpx.HTTPError as e:
                raise RegistrationRefused(
                    f"could not register node type {d.name!r}: the command API at {api_url} "
                    f"did not answer ({type(e).__name__}: {e})"
                ) from None
            if answer.status_code != 200:
                raise RegistrationRefused(
                    f"the command API refused node type {d.name!r} (PUT {path}: "
                    f"{answer.status_code}): {_reason(answer)}"
                )
            tenants.add(str(answer.json()["tenant"]))
    if len(tenants) > 1:  # one key, one tenant: anything else is a broken API
        raise RegistrationRefused(f"the types were registered for several tenants: {tenants}")
    return tenants.pop() if tenants else ""


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip()[:500] or answer.reason_phrase
    if isinstance(body, dict) and body.get("detail"):
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)
    return str(body)[:500]


class Registry(Protocol):
    """The part of ``node_types.registry.NodeTypeRegistry`` that liveness uses."""

    async def beat(self, tenant: str, names: Sequence[str], worker: str) -> None: ...
    async def gone(self, names: Sequence[str], worker: str) -> None: ...


async def open_registry(pool: Any) -> Registry:
    """The deployment's registry over ``pool`` (an ``asyncpg.Pool``), its tables made if
    need be."""
    from node_types.registry import NodeTypeRegistry

    registry = NodeTypeRegistry(pool)
    await registry.ensure_schema()
    return registry


@dataclass
class Liveness:
    """Beats for ``names`` of ``tenant`` as ``worker`` (run ``run`` as a task), and says
    ``gone`` when the worker stops cleanly."""

    registry: Registry
    tenant: str
    names: Sequence[str]
    worker: str
    interval_s: float = BEAT_INTERVAL_S

    async def run(self) -> None:
        while True:
            try:
                await self.registry.beat(self.tenant, list(self.names), self.worker)
            except Exception as e:  # noqa: BLE001 - a missed beat must not stop the worker
                log.warning("liveness beat for %s failed: %s", ", ".join(self.names), e)
            await asyncio.sleep(self.interval_s)

    async def gone(self) -> None:
        try:
            await self.registry.gone(list(self.names), self.worker)
        except Exception as e:  # noqa: BLE001 - stopping anyway; the rows age out
            log.warning("could not say that this worker is gone: %s", e)
