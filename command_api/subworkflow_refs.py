"""Publishing checks that each ``subworkflow`` node calls a workflow the tenant has.

A node naming a workflow the tenant has not published (or a version of it that does not
exist) is refused at publish with a 422 naming the node, instead of failing every run when
it gets there. A workflow may call itself (it is being published: the depth limit stops it
at run time, ``AOB_MAX_SUBWORKFLOW_DEPTH``). One lookup per workflow named; a definition
without subworkflow nodes costs none. A workflow deleted or unpublished later is the run's
concern: the node then fails with the reason.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from command_api import registry
from schemas.subworkflow_node import LATEST, SUBWORKFLOW
from schemas.workflow_ids import workflow_id_for


async def unknown_subworkflows(
    pool: asyncpg.Pool, tenant: str, publishing: str, definition: dict[str, Any]
) -> list[str]:
    """Why the subworkflow nodes of ``definition`` (canonical JSON), published by ``tenant``
    as ``publishing``, call nothing (empty when each calls a workflow the tenant has)."""
    own = workflow_id_for(tenant, publishing)
    reasons: list[str] = []
    for node in definition.get("nodes") or []:
        config = node.get("config") or {}
        name, version = config.get("workflow"), config.get("version")
        if node.get("type") != SUBWORKFLOW or not isinstance(name, str):
            continue
        workflow_id = workflow_id_for(tenant, name)
        if workflow_id == own and version in (None, LATEST):
            continue
        wanted = None if version in (None, LATEST) else version
        if await registry.find_version(pool, tenant, workflow_id, wanted) is not None:
            continue
        where = f"node {node.get('id')!r} (subworkflow)"
        if wanted is not None:
            reasons.append(f"{where} calls version {wanted!r} of workflow {name!r}, which has none")
        else:
            reasons.append(
                f"{where} calls workflow {name!r}, which the tenant has not published: "
                "publish it first"
            )
    return reasons
