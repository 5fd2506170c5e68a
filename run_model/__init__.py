"""The run model: the domain of the whole system, in one package beside the wire contract.

A run's state is a fold of its events (``state``, ``evolve``), and decisions are a pure
function of that state, the event and the clock (``decide``, with ``patching``, ``forking``,
``timers``, ``edges`` and ``backoff``). No Kafka, no faust, no I/O here. The coordinator
(``processors``) is one adapter around it; the command API (forks), the projections (the
status rules of the read model), the replay tooling (time travel) and the GraphQL enums use
it too, from here. ``RunStatus`` and ``NodeStatus`` are defined once, in ``state``.
"""

from run_model.decide import Decision, decide, step
from run_model.evolve import evolve, fold
from run_model.state import (
    NODE_IN_FLIGHT,
    NODE_TERMINAL,
    RUN_FINISHED,
    NodeState,
    NodeStatus,
    RunState,
    RunStatus,
    run_status,
)

__all__ = [
    "NODE_IN_FLIGHT",
    "NODE_TERMINAL",
    "RUN_FINISHED",
    "Decision",
    "NodeState",
    "NodeStatus",
    "RunState",
    "RunStatus",
    "decide",
    "evolve",
    "fold",
    "run_status",
    "step",
]
