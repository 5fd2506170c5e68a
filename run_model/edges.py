"""Which incoming edges of a node are live (DESIGN.md, dead-path elimination).

An edge is live when its source SUCCEEDED and its guard matches the source's output:
unguarded edges always; out of a ``condition`` node, ``when: "true"|"false"`` against the
worker's ``{"result": bool}``; out of a ``hitl`` node, ``when`` against
``{"decision": "approved"|"rejected"}``; out of a ``wait_event`` node, ``when:
"received"|"timeout"`` against the outcome the coordinator decided (its output is the
event's data, which says nothing of it). A node whose predecessors are all finished runs if
at least one incoming edge is live, and is skipped otherwise, so joins never wait forever.
"""

from __future__ import annotations

from typing import Any

from run_model.state import NodeState, NodeStatus, RunState
from schemas.ir import IREdge


def guard_value(source_type: str, output: Any, outcome: str | None = None) -> str | None:
    """The outcome of a finished node that edge guards are compared with, if it has one."""
    if source_type == "wait_event":
        return outcome
    if source_type == "condition":
        result = output.get("result") if isinstance(output, dict) else output
        # bool only: a truthy string such as "false" must not open the "true" branch.
        return ("true" if result else "false") if isinstance(result, bool) else None
    if source_type == "hitl" and isinstance(output, dict):
        decision = output.get("decision")
        return decision if isinstance(decision, str) else None
    return None


def edge_live(state: RunState, edge: IREdge) -> bool:
    """Whether the incoming ``edge`` (``edge.node`` is its source) carries control."""
    source: NodeState = state.nodes[edge.node]
    if source.status is not NodeStatus.SUCCEEDED:
        return False
    if edge.when is None:
        return True
    # An output kept only in the CAS cannot be read here (no I/O in the decider): a guard
    # over it does not match. Condition and approval outputs are tiny, so always inline.
    source_type = state.node_def(edge.node).type
    if source.outcome is not None and source_type == "wait_event":
        return source.outcome == edge.when
    if not source.output_inline:
        return False
    return guard_value(source_type, source.output) == edge.when


def predecessors_finished(state: RunState, node_id: str) -> bool:
    return all(state.nodes[e.node].terminal for e in state.node_def(node_id).predecessors)


def dead_reason(state: RunState, node_id: str) -> str:
    """Why no incoming edge of ``node_id`` is live, in words."""
    parts = []
    for e in state.node_def(node_id).predecessors:
        source = state.nodes[e.node]
        if source.status is NodeStatus.SUCCEEDED:
            got = guard_value(state.node_def(e.node).type, source.output, source.outcome)
            parts.append(f"{e.node} gave {got!r}, the edge needs {e.when!r}")
        else:
            parts.append(f"{e.node} is {source.status.value.lower()}")
    return "branch not taken: " + "; ".join(parts)
