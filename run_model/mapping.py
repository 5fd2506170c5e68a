"""The ``map`` node, as the coordinator runs it: one node per item of a list, from events.

A map is decided like everything else, by the pure decider from the run's facts:

- When the node is ready, the decider reads its list (``over``, a path into the run context
  the coordinator holds: the run input and the inline outputs of finished nodes) and appends
  ``run.map_started`` with the number of items; the map node is RUNNING from then on. A path
  that does not lead to a list, a list of more than ``MAX_MAP_ITEMS``, or an output kept only
  in the CAS (the coordinator reads no storage) fails the node with the reason.
- Items are scheduled in index order, at most ``max_parallel`` of them unfinished at once
  (an item that waits for its retry holds its slot). Each item is a node in all but name:
  ``run.node_scheduled`` / ``node_started`` / ``node_succeeded`` / ``node_failed`` /
  ``node_retry_planned`` / ``timer_fired`` of the map node with ``item`` set to its index,
  its own attempts, retries (the inner node's policy) and deadlines (its ``timeout_s``). So
  the fold, the retries and the timers are the ones every node has, applied to
  ``NodeState.items[index]`` instead of the node, and an item's ids are derived as any
  decision's are (its index is part of them): a replay after a crash decides the same ids.
- ``fail_fast``: the first item that fails for good fails the map node (so the run), and
  no new item starts. ``collect``: every item runs; the output lists results and errors.
- When every item has finished, the decider appends the map node's own NodeSucceeded,
  with its output inline (``map_output``): the list of the items' outputs in item order,
  each inline or, if the item's output was too large to travel (over 16 KB: the worker put
  it in the CAS), as ``{"$ref": "cas://..."}``, as a run's output names large outputs. The
  coordinator writes no blob, so the list itself must fit ``MAP_OUTPUT_MAX_BYTES``; a longer
  one fails the node with the reason (the items' own outputs are all kept, in their events).

A fork keeps the items that had finished at its point (``run_model.forking``) and runs the
others again under its own ids.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from run_model.limits import json_size
from run_model.state import NodeState, NodeStatus, RunState
from schemas.map_node import MAP, MAX_MAP_ITEMS, MapConfig, map_config, over_path
from schemas.workflow import RetryPolicy

# The largest list of results a map's NodeSucceeded carries inline (it goes into the run's
# state and into the tasks of the nodes after it, whose size is bounded by MAX_TASK_BYTES).
MAP_OUTPUT_MAX_BYTES = 256 * 1024


def item_key(node_id: str, index: int) -> str:
    """How an item is named in decision ids and retry jitter: ``each[3]``."""
    return f"{node_id}[{index}]"


def spec_of(state: RunState, node_id: str) -> MapConfig | str:
    """The map's config, or why it is not one (checked at publish; a run built otherwise
    fails the node with the reason rather than the coordinator)."""
    try:
        return map_config(state.node_def(node_id).config)
    except ValidationError as e:
        return f"its config is not a map's: {e.errors()[0]['msg']}"


def retry_policy(state: RunState, node_id: str, item: int | None) -> RetryPolicy:
    """The node's retry policy, or its inner node's for one of a map's items."""
    definition = state.node_def(node_id)
    if item is None or definition.type != MAP:
        return definition.retry
    spec = spec_of(state, node_id)
    return spec.retry if isinstance(spec, MapConfig) else RetryPolicy()


def item_timeout_s(state: RunState, node_id: str) -> float | None:
    spec = spec_of(state, node_id)
    return spec.node.timeout_s if isinstance(spec, MapConfig) else None


def resolve_over(state: RunState, over: str) -> list[Any] | str:
    """The list ``over`` leads to in the run context, or why there is none."""
    path = over_path(over)
    where = "the run input"
    value: Any
    if path[0] == "input":
        value, rest = state.input, path[1:]
    elif path[0] == "nodes" and len(path) >= 3 and path[2] == "output":
        source_id = path[1]
        source = state.nodes.get(source_id)
        if source is None:
            return f"`over` reads node {source_id!r}, which the run does not have"
        if source.status is not NodeStatus.SUCCEEDED:
            return f"`over` reads node {source_id!r}, which did not succeed (it is {source.status})"
        if not source.output_inline:
            return (
                f"`over` reads node {source_id!r}, whose output is kept only in the CAS "
                f"({source.output_ref}): the coordinator reads no storage, so a map can only "
                "go over a value that travels inline (16 KB); map over a smaller output"
            )
        where = f"node {source_id!r}'s output"
        value, rest = source.output, path[3:]
    else:
        return f"`over` {over!r} is not a path into the run context"
    walked = []
    for key in rest:
        walked.append(key)
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return f"`over` {over!r}: {where} has nothing at {'.'.join(walked)!r}"
    if not isinstance(value, list):
        return f"`over` {over!r} is {_kind(value)}, not a list"
    if len(value) > MAX_MAP_ITEMS:
        return f"`over` {over!r} has {len(value)} items; a map takes at most {MAX_MAP_ITEMS}"
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def item_value(node: NodeState) -> Any:
    """An item's output as the map's output lists it: the value, or ``{"$ref": ref}``."""
    return node.output if node.output_inline else {"$ref": node.output_ref}


def map_output(node: NodeState, failure: str) -> Any:
    """The output of a map whose items have all finished: the list of their outputs in item
    order (``fail_fast``), or ``{"results": [...], "errors": [...]}`` (``collect``: a failed
    item's result is null, and its error is listed with its index)."""
    count = node.map_items or 0
    results = []
    errors = []
    for index in range(count):
        item = node.items[index]
        if item.status is NodeStatus.SUCCEEDED:
            results.append(item_value(item))
        else:
            results.append(None)
            errors.append({"index": index, "error": item.error or "failed"})
    if failure == "collect":
        return {"results": results, "errors": errors}
    return results


def output_too_large(output: Any) -> str | None:
    size = json_size(output)
    if size is not None and size <= MAP_OUTPUT_MAX_BYTES:
        return None
    shown = f"{size} bytes" if size is not None else "not encodable"
    return (
        f"its list of results is {shown}, and a map's output may take at most "
        f"{MAP_OUTPUT_MAX_BYTES} (the coordinator writes no blob): make each item's output "
        "smaller (an item's output over 16 KB is listed by its CAS reference)"
    )


def unfinished(node: NodeState) -> int:
    """Items scheduled and not finished: each holds one of ``max_parallel``'s slots."""
    return len(node.items) - node.items_done


def next_items(node: NodeState, slots: int) -> list[int]:
    """The lowest ``slots`` indices never scheduled (after a fork, the finished items kept
    leave gaps: those are skipped), from the node's cursor on."""
    out: list[int] = []
    index = node.items_next
    count = node.map_items or 0
    while len(out) < slots and index < count:
        if index not in node.items:
            out.append(index)
        index += 1
    return out


def first_failure(node: NodeState) -> tuple[int, str] | None:
    """(index, error) of the first item that failed for good, if any."""
    if not node.items_failed:
        return None
    index = node.items_failed[0]
    return index, node.items[index].error or "failed"


def all_finished(node: NodeState) -> bool:
    return node.items_done == (node.map_items or 0)
