"""A completed run's output: what ``run.completed`` carries, and where the rest is.

The output of a run is the outputs of its sink nodes. Each is small enough for its own
event (inline up to ``INLINE_OUTPUT_MAX_BYTES``, else a CAS reference), but many sinks
together can pass what one event may take: 70 sinks of 16 KB made a ``run.completed`` of
1.1 MB, which the broker refuses. So the event carries inline the outputs that fit in
``RUN_OUTPUT_INLINE_BYTES``, in topological order (a reference counts as its own small
size), and names the others in ``output_elsewhere``. Nothing is lost: each named output is in
its node's ``run.node_succeeded`` and in the node's state here, from which ``run_output``
puts the whole output back together (the read model does the same from its node rows,
``projections.runs``). The coordinator writes no blob (nothing slow runs in its loop), which
is why it names outputs rather than storing them in the CAS.
"""

from __future__ import annotations

from typing import Any

from run_model.limits import json_size
from run_model.state import NodeState, NodeStatus, RunState
from schemas.events import RunCompletedPayload

RUN_OUTPUT_INLINE_BYTES = 256 * 1024


def sink_output(node: NodeState) -> Any:
    """How a sink's output appears in a run's output: the value, or ``{"$ref": ref}``."""
    return node.output if node.output_inline else {"$ref": node.output_ref}


def completion(state: RunState, budget: int = RUN_OUTPUT_INLINE_BYTES) -> RunCompletedPayload:
    """The payload of ``state``'s run.completed: the sinks' outputs that fit in ``budget``
    bytes, and the names of the others (also those that cannot be encoded at all)."""
    output: dict[str, Any] = {}
    elsewhere: list[str] = []
    used = 0
    for sink in state.sinks():
        node = state.nodes[sink]
        if node.status is not NodeStatus.SUCCEEDED:
            continue
        value = sink_output(node)
        size = json_size(value)
        if size is not None and used + size + len(sink) <= budget:
            output[sink] = value
            used += size + len(sink)
        else:
            elsewhere.append(sink)
    return RunCompletedPayload(output=output, output_elsewhere=elsewhere)


def run_output(state: RunState) -> dict[str, Any]:
    """The whole output of a run whose sinks have finished: every sink that succeeded, inline
    or by reference, whatever its run.completed carried inline."""
    return {
        sink: sink_output(state.nodes[sink])
        for sink in state.sinks()
        if state.nodes[sink].status is NodeStatus.SUCCEEDED
    }
