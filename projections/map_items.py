"""A map node's items in its ``node_executions`` row (``items``, jsonb), folded from the node
events that name an ``item`` (``run_model.mapping``).

Each item is kept as a node row is, in small: its status moves forward within an attempt and
restarts with a newer one, an older attempt's report changes nothing, SUCCEEDED is final;
a planned retry shows the next attempt SCHEDULED, with the error that caused it. The whole
list lives in the map's row (keyed by the index as text, as JSON keys are), so the query API
reads a map's items with the row and a rebuild yields the same value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from read_model.rows import NodeRow
from run_model import NodeStatus
from schemas.envelope import Event
from schemas.events import (
    MapStarted,
    NodeFailed,
    NodeRetryPlanned,
    NodeScheduled,
    NodeStarted,
    NodeSucceeded,
)

_RANK = {"SCHEDULED": 1, "RUNNING": 2, "FAILED": 3, "SUCCEEDED": 4}


def map_started(node: NodeRow, ev: MapStarted) -> None:
    """The map read its list: it runs, and its items (none yet, or those a fork kept) are
    listed as they are scheduled."""
    if node.status in (NodeStatus.SUCCEEDED, NodeStatus.SKIPPED, NodeStatus.FAILED):
        return
    node.status = NodeStatus.RUNNING
    node.node_type = "map"
    node.attempts = max(node.attempts, 1)
    node.started_at = node.started_at or ev.occurred_at
    node.items = dict(node.items or {})


def item_event(node: NodeRow, ev: Event, index: int) -> None:
    """Fold one item's event into the map's row."""
    items: dict[str, Any] = dict(node.items or {})
    key = str(index)
    item = dict(items.get(key) or {"index": index, "status": "PENDING", "attempts": 0})
    p: Any = ev.payload
    if isinstance(ev, NodeRetryPlanned):
        status, at = "SCHEDULED", p.due_at
    else:
        status = {
            NodeScheduled: "SCHEDULED",
            NodeStarted: "RUNNING",
            NodeSucceeded: "SUCCEEDED",
            NodeFailed: "FAILED",
        }[type(ev)]
        at = ev.occurred_at
    if not _moves_forward(item, p.attempt, status):
        return
    if p.attempt > item["attempts"]:
        item.update(attempts=p.attempt, started_at=None, finished_at=None)
    item["status"] = status
    if isinstance(ev, NodeStarted):
        item["started_at"] = _at(at)
    elif isinstance(ev, NodeSucceeded):
        item.update(
            finished_at=_at(at),
            error=None,
            output=p.output if p.output_inline else None,
            output_ref=p.output_ref,
        )
    elif isinstance(ev, NodeFailed):
        item.update(finished_at=_at(at), error=p.error)
    if isinstance(ev, NodeSucceeded | NodeFailed) and item.get("started_at") is None:
        started = p.started_at  # for a quick attempt, told only here
        item["started_at"] = _at(started) if started is not None else None
    items[key] = item
    node.items = items


def kept_items(items: Any, finished: set[int]) -> dict[str, Any] | None:
    """What a fork keeps of a map's items: those finished at its point
    (``run_model.forking``); the others it runs again."""
    if not items or not finished:
        return None
    return {k: v for k, v in items.items() if int(k) in finished}


def _moves_forward(item: dict[str, Any], attempt: int, status: str) -> bool:
    if item["status"] == "SUCCEEDED" or attempt < item["attempts"]:
        return False
    return attempt > item["attempts"] or _RANK[status] > _RANK.get(item["status"], 0)


def _at(at: datetime) -> str:
    return at.isoformat()
