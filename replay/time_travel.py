"""A run as it was at any point of its history, folded through the coordinator's own evolve.

There is no second interpretation of events here: ``run_model.evolve`` is the function
the coordinator folds every event with, so what ``aob runs show --at`` prints is what the
coordinator knew at that point (before it decided anything on the next event).
"""

from __future__ import annotations

from typing import Any

from infra.run_log import Logged, RunNotInLog
from run_model.completion import run_output
from run_model.evolve import fold
from run_model.state import RunState, RunStatus


def state_at(history: list[Logged]) -> RunState:
    """The run's state after the events of ``history`` (a run's first events, in order)."""
    state = fold(None, (logged.event for logged in history))
    if state is None:
        raise RunNotInLog(
            "the history holds no run.submitted (or run.forked) event: nothing to fold"
        )
    return state


def describe(state: RunState, history: list[Logged]) -> dict[str, Any]:
    """``state`` at the last event of ``history``, as plain JSON (``aob runs show --json``)."""
    last = history[-1]
    return {
        "run_id": state.run_id,
        "at": {
            "seq": last.seq,
            "position": last.position.token(),
            "event_id": last.event.event_id,
            "type": last.event.type,
            "occurred_at": last.event.occurred_at.isoformat(),
        },
        "status": state.status.value,
        "version": state.version,
        "reason": state.reason,
        # Whole, from the sinks' states: run.completed may name outputs instead of carrying
        # them (run_model.completion).
        "output": run_output(state) if state.status is RunStatus.COMPLETED else None,
        "nodes": {
            node_id: {
                "type": state.ir.nodes[node_id].type,
                "status": node.status.value,
                "attempt": node.attempt,
                "output": node.output,
                "output_ref": node.output_ref,
                "error": node.error or (node.failures.get(node.attempt) if node.failures else None),
                "decision": node.approval.decision if node.approval else None,
                # A map node's items, as the coordinator had them (run_model.mapping).
                "items": [
                    {
                        "index": index,
                        "status": item.status.value,
                        "attempts": item.attempt,
                        "output": item.output,
                        "output_ref": item.output_ref,
                        "error": item.error,
                    }
                    for index, item in sorted(node.items.items())
                ]
                if node.map_items is not None
                else None,
            }
            for node_id, node in state.nodes.items()
        },
        "events": [
            {
                "seq": logged.seq,
                "position": logged.position.token(),
                "event_id": logged.event.event_id,
                "type": logged.event.type,
                "occurred_at": logged.event.occurred_at.isoformat(),
                "actor": logged.event.actor.model_dump(mode="json"),
                "payload": logged.event.payload.model_dump(mode="json"),
            }
            for logged in history
        ],
    }
