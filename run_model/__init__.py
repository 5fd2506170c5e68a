"""The pure decider: a run's state is a fold of its events, and decisions are a pure
function of that state, the event and the clock. No Kafka, no faust, no I/O here."""

from run_model.decide import Decision, decide, step
from run_model.evolve import evolve, fold
from run_model.state import NodeState, NodeStatus, RunState, RunStatus

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
