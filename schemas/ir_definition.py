"""The way back from an IR to a definition, for events written before runs carried one."""

from __future__ import annotations

from typing import Any

from schemas.ir import WorkflowIR
from schemas.workflow import EdgeDef, NodeDef, RetryPolicy, WorkflowDefinition


def definition_from_ir(ir: WorkflowIR) -> dict[str, Any]:
    """A canonical definition that compiles to ``ir``: nodes in the IR's (definition) order,
    edges grouped by source node in that order. A retry policy equal to the default is left
    out, as the compiler put it in."""
    nodes = [
        NodeDef(
            id=n.id,
            type=n.type,
            config=n.config,
            retry=None if n.retry == RetryPolicy() else n.retry,  # the compiler's default
            timeout_s=n.timeout_s,
            concurrency=n.concurrency,
            rate_limit=n.rate_limit,
        )
        for n in ir.nodes.values()
    ]
    edges = [
        EdgeDef.model_validate({"from": n.id, "to": e.node, "when": e.when})
        for n in ir.nodes.values()
        for e in n.successors
    ]
    return WorkflowDefinition(nodes=nodes, edges=edges).canonical()
