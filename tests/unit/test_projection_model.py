"""The read model's statuses are the run model's: a property test over random histories.

``projections.runs`` folds a run's events into rows, ``run_model.evolve`` into the
coordinator's state. The rows keep more (attempts, times, outputs), but the status of the run
and of each node must say what the model says after every event of the log. Histories come
from random DAGs run as the live system runs them: the coordinator reads the run's log in
order and appends its decisions to it; workers, people and timers append whenever they like,
duplicates included.

Not covered: a worker's answer that arrives after the coordinator timed its attempt out and
scheduled the next one. The model takes that late success (the first success wins); the rows
follow the latest attempt and ignore it. The last test here shows the difference.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.runs import RunFold
from run_model import NodeState, NodeStatus, RunState, RunStatus, evolve, run_status, step
from run_model.testing import (
    EPOCH,
    build_ir,
    cancel_requested,
    run_submitted,
    started,
    succeeded,
)
from run_model.timers import pending_timers, timer_fired
from schemas.envelope import Event
from tests.unit.test_decider_properties import Scenario, Simulation, scenarios


class LoggedRun(Simulation):
    """The simulation of the decider's property test, with one log as the run's stream."""

    def __init__(self, sc: Scenario, rnd: random.Random, cancel: bool) -> None:
        super().__init__(sc, rnd)
        self.log: list[Event] = []
        self.read = 0  # the coordinator's position in the log
        self.cancel = cancel

    def appended(self) -> None:
        """What the last action sent (decisions, a person's submission) goes to the log."""
        self.log.extend(self.inbox)
        self.inbox.clear()

    def run(self) -> None:
        self.log.append(run_submitted("run-p", self.sc.ir, {"seed": 1}))
        for _ in range(100_000):
            choices = []
            if self.read < len(self.log):
                choices.append("coordinate")
            if self.tasks:
                choices.append("work")
            timers = self.fireable()
            if timers:
                choices.append("timer")
            people = self.deciders() if self.state is not None else []
            if people and self.rnd.random() < 0.3:
                choices.append("decide")
            if self.cancel and self.state is not None and self.rnd.random() < 0.02:
                choices.append("cancel")
            if not choices:
                if not people:
                    return
                choices.append("decide")
            choice = self.rnd.choice(choices)
            if choice == "coordinate":
                self.deliver(self.log[self.read])
                self.read += 1
            elif choice == "work":
                task = self.tasks.pop(self.rnd.randrange(len(self.tasks)))
                reports = self.work(task)
                if self.rnd.random() < 0.1:  # redelivered: the same reports again
                    reports += self.work(task)
                self.log.extend(reports)
            elif choice == "timer":
                assert self.state is not None
                timer = self.rnd.choice(timers)
                self.log.append(timer_fired(self.state.run_id, self.state.tenant, timer, EPOCH))
            elif choice == "decide":
                self.decide(*self.rnd.choice(people))
            else:
                assert self.state is not None
                self.log.append(cancel_requested(self.state.run_id))
                self.cancel = False
            self.appended()
        raise AssertionError("the simulation did not settle")


def shown(node: NodeState) -> NodeStatus:
    """A node's status as the read model shows it, from the model's facts. The rows follow
    the latest attempt, so between attempts they say more than the node's status does: an
    attempt that failed but not for good is FAILED until its retry is decided, and a planned
    retry is SCHEDULED (at the moment it is due) until its timer schedules it."""
    if not node.terminal:
        if any(a not in node.scheduled for a in node.retry_due):
            return NodeStatus.SCHEDULED
        if node.attempt in node.failures:
            return NodeStatus.FAILED
    return node.status


def statuses(model: RunState | None, rows: RunFold, run_id: str) -> tuple[object, object]:
    """(what the model says, what the rows say): the run's status and its nodes'.

    The model's node statuses are taken as ``shown``; the run's status then follows from them
    by the model's own rule (``run_model.run_status``, which the rows use too). Where no node
    is between attempts that is the model's run status itself; while a failed attempt waits
    for the coordinator to decide its retry, the rows do not count that node as in flight,
    so a run whose other nodes wait for a person shows WAITING until the retry is decided.
    """
    run = rows.runs.get(run_id)
    seen = (
        RunStatus(run.status) if run else None,
        {n.node_id: NodeStatus(n.status) for n in rows.nodes_of(run_id)},
    )
    if model is None:
        return (None, {}), seen
    nodes = {nid: shown(node) for nid, node in model.nodes.items()}
    return (run_status(model.status, nodes.values()), nodes), seen


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32), cancel=st.booleans())
def test_the_rows_statuses_are_the_models_fold_after_every_event(
    sc: Scenario, seed: int, cancel: bool
) -> None:
    sim = LoggedRun(sc, random.Random(seed), cancel)
    sim.run()
    model: RunState | None = None
    rows = RunFold()
    seen: set[str] = set()
    for i, event in enumerate(sim.log):
        model = evolve(model, event)
        if event.event_id not in seen:  # the projector drops what it has seen
            seen.add(event.event_id)
            rows.apply(event)
        expected, got = statuses(model, rows, event.aggregate_id)
        assert got == expected, f"after event {i} ({event.type}): {sim.log[: i + 1]}"


@pytest.mark.xfail(
    strict=True,
    reason="the rows ignore a success of an attempt older than the latest; the model takes it",
)
def test_a_late_success_after_a_time_out_shows_as_the_model_says() -> None:
    ir = build_ir({"a": "noop"}, [], max_attempts=2, timeout_s=1)
    log: list[Event] = [run_submitted("run-late", ir)]
    state, decision = step(None, log[0], EPOCH)
    log += decision.events
    first = decision.tasks[0]
    log.append(started(first))
    state, _ = step(state, log[-1], EPOCH)
    assert state is not None
    (deadline,) = pending_timers(state, grace_s=0)
    log.append(timer_fired(state.run_id, state.tenant, deadline, EPOCH))
    state, decision = step(state, log[-1], EPOCH)  # timed out: attempt 2 is scheduled
    log += decision.events
    log.append(succeeded(first))  # ... and then attempt 1 answers after all
    model: RunState | None = None
    rows = RunFold()
    for event in log:
        model = evolve(model, event)
        rows.apply(event)
    expected, got = statuses(model, rows, "run-late")
    assert got == expected
