"""A fork's first state: another run's history up to a point, re-addressed to the fork.

``evolve(None, RunForked)`` folds the carried history through the same ``evolve`` (so a
fork of a fork, a patched run or an old event version fold exactly as they did for the
source), and hands the result here. What the source had finished at that point is a fact
the fork keeps: SUCCEEDED nodes with their outputs (reused, never run again), SKIPPED and
FAILED ones. Everything else starts afresh: work in flight at that point belongs to the
source's attempts, whose answers go to the source, so the fork schedules it again under its
own id (a hitl node that was waiting asks again, and its approval is the fork's own). A map
node that was running keeps the items that had finished (reused, as finished nodes are) and
starts again: the fork reads its list anew and runs the other items under its own ids.
"""

from __future__ import annotations

from run_model.state import NodeState, NodeStatus, RunState, RunStatus
from schemas.events import RunForked


def fork_state(source: RunState | None, event: RunForked) -> RunState | None:
    """The fork's state from ``source``, the source's state folded up to the fork point
    (``None`` if the history did not start a run: then neither does the fork)."""
    if source is None:
        return None
    nodes = {node_id: _carried(node) for node_id, node in source.nodes.items()}
    return source.model_copy(
        update={
            "run_id": event.aggregate_id,
            "tenant": event.actor.tenant,
            "input": event.payload.input,
            # PENDING, as after RunSubmitted: the decider starts the fork with its own
            # RunStarted. A finished source (forked at its last event) runs again from here.
            "status": RunStatus.PENDING,
            "cancel_requested": False,
            # A fork is a run of its own, started by a person: no parent waits for it.
            "parent": None,
            "reason": None,
            "nodes": nodes,
            # The source's event ids are the source's: the fork has folded only its own.
            "applied": {event.event_id},
        },
        deep=True,
    )


def _carried(node: NodeState) -> NodeState:
    """What the fork keeps of a node: all of a finished one, the finished items of a map."""
    if node.terminal:
        return node
    kept = {i: item for i, item in node.items.items() if item.terminal}
    failed = [i for i, item in kept.items() if item.status is NodeStatus.FAILED]
    return NodeState(items=kept, items_done=len(kept), items_failed=failed)


def fork_point_failure(state: RunState) -> tuple[str, str] | None:
    """(node id, error) of a node that had failed for good at the fork point, if any: the
    run had failed there, and so does the fork (fork before that failure to retry it)."""
    for node_id in state.ir.order:
        node = state.nodes[node_id]
        if node.status is NodeStatus.FAILED:
            return node_id, node.error or "failed"
    return None
