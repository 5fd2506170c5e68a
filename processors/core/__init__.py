"""The pure decider: a run's state is a fold of its events, and decisions are a pure
function of that state, the event and the clock. No Kafka, no faust, no I/O here."""

from processors.core.decide import Decision, decide, step
from processors.core.evolve import evolve, fold
from processors.core.state import NodeState, NodeStatus, RunState, RunStatus

__all__ = [
    "Decision",
    "NodeState",
    "NodeStatus",
    "RunState",
    "RunStatus",
    "decide",
    "evolve",
    "fold",
    "step",
]
