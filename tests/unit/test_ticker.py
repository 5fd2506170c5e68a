"""The ticker's index of pending timers, and its choice of what to fire."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from processors.config import CoordinatorConfig
from processors.ticker import Ticker
from run_model.testing import EPOCH, build_ir, started
from tests.unit.test_decider import Harness


def ticker(**app: Any) -> Ticker:
    fake_app: Any = SimpleNamespace(**{"rebalancing": False, "in_recovery": False, **app})
    return Ticker(fake_app, CoordinatorConfig(timer_refire_s=60), clock=lambda: EPOCH)


def waiting_run(run_id: str = "run-1") -> Harness:
    """A run whose only node is running with a 10 s limit: one deadline pending."""
    h = Harness(build_ir({"a": "noop"}, [], timeout_s=10), run_id=run_id)
    h.feed(started(h.task("a")))
    return h


def test_watch_follows_the_state_and_forgets_a_run_with_nothing_pending() -> None:
    t = ticker()
    h = waiting_run()
    t.watch(h.run, partition=3)
    (deadline,) = t.index["run-1"].timers
    assert (deadline.kind, deadline.node_id, deadline.attempt) == ("timeout", "a", 1)
    assert deadline.due_at == EPOCH + timedelta(seconds=15)  # 10 s + the 5 s grace
    assert t.index["run-1"].partition == 3
    h.succeed("a")
    t.watch(h.run, partition=3)
    assert t.index == {}


def test_fires_what_is_due_once_until_the_refire_interval() -> None:
    t = ticker()
    t.rebuild([(waiting_run("run-1").run, 0), (waiting_run("run-2").run, 1)], generation=1)
    assert t.due(EPOCH) == []
    later = EPOCH + timedelta(seconds=16)
    due = t.due(later)
    assert sorted(run_id for run_id, _, _ in due) == ["run-1", "run-2"]
    for run_id, _, timer in due:
        t._fired[(run_id, timer)] = time.monotonic()  # as fire() records them
    assert t.due(later) == []  # fired a moment ago: not again yet


def test_forgets_fired_timers_no_run_waits_for_any_more() -> None:
    t = ticker()
    h = waiting_run()
    t.watch(h.run, 0)
    (timer,) = t.index["run-1"].timers
    t._fired[("run-1", timer)] = 0.0
    t.rebuild([], generation=2)
    assert t.due(EPOCH + timedelta(hours=1)) == []
    assert t._fired == {}


def test_quiet_while_faust_rebalances_or_recovers() -> None:
    assert ticker(rebalancing=True).busy()
    assert ticker(in_recovery=True).busy()
    assert not ticker().busy()
