"""Failing a run that cannot go on: the decision taken when no decision can be taken.

The coordinator fails a run, instead of stopping on it, when deciding about one of its
events raises (a bug in the decider), when what was decided cannot be sent (it does not
encode, or it is larger than the broker takes), and when the run's state can neither be
loaded nor rebuilt. Every other run of the partition goes on; this one ends FAILED, with a
reason a person can act on, and the record that caused it is parked in the dead-letter topic.

Pure, like every decision: the RunFailed's id is derived from the event that caused it
(``decided``), so a coordinator that meets the same record again after a crash fails the run
with the same id, and consumers keep the first copy.
"""

from __future__ import annotations

from datetime import datetime

from run_model.decisions import decided
from run_model.evolve import evolve
from run_model.limits import capped
from run_model.state import RunState
from schemas.envelope import Event
from schemas.events import RunFailed, RunFailedPayload

# Distinct from the decider's own "fail" (a node failed for good), which the same event may
# have been about to decide.
ABORT = "abort"


def fail_run(
    state: RunState | None, cause: Event, reason: str, now: datetime
) -> tuple[RunState | None, RunFailed]:
    """The RunFailed that ends ``cause``'s run because of ``reason`` (cut to a size any event
    takes), and the run's state after it: FAILED, with ``cause`` counted as applied. The state
    is None if there was none (the run's first event could not be decided on)."""
    tenant = state.tenant if state is not None else cause.actor.tenant
    failed = decided(
        RunFailed, RunFailedPayload(reason=capped(reason)), cause, ABORT, tenant=tenant, now=now
    )
    if state is None:
        return None, failed
    marked = state.model_copy(update={"applied": state.applied | {cause.event_id}})
    return evolve(marked, failed), failed
