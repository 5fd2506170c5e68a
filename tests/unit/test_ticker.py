"""The ticker's choice of what to fire, over a plain dict standing in for faust's table."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from processors.config import CoordinatorConfig
from processors.core.timers import Timer
from processors.testing import EPOCH
from processors.ticker import Ticker, timers_entry


def ticker(table: dict[bytes, bytes], **app: Any) -> Ticker:
    fake_app: Any = SimpleNamespace(**{"rebalancing": False, "in_recovery": False, **app})
    config = CoordinatorConfig(timer_refire_s=60)
    return Ticker(fake_app, table, config, clock=lambda: EPOCH)  # type: ignore[arg-type]


def test_fires_what_is_due_once_until_the_refire_interval() -> None:
    soon = Timer("retry", "a", 2, EPOCH - timedelta(seconds=1))
    later = Timer("timeout", "b", 1, EPOCH + timedelta(seconds=30), 35.0)
    table = {b"run-1": timers_entry(3, "acme", [soon, later])}
    t = ticker(table)
    assert t.due(EPOCH) == [("run-1", "acme", 3, soon)]
    t._fired[("run-1", soon)] = time.monotonic()  # as tick() records it
    assert t.due(EPOCH) == []  # fired a moment ago: not again yet
    assert t.due(EPOCH + timedelta(seconds=31)) == [("run-1", "acme", 3, later)]


def test_forgets_timers_no_run_waits_for_any_more() -> None:
    soon = Timer("retry", "a", 2, EPOCH)
    table = {b"run-1": timers_entry(0, "acme", [soon])}
    t = ticker(table)
    t._fired[("run-1", soon)] = 0.0
    del table[b"run-1"]
    assert t.due(EPOCH) == []
    assert t._fired == {}


async def test_quiet_while_faust_rebalances() -> None:
    table = {b"run-1": timers_entry(0, "acme", [Timer("retry", "a", 2, EPOCH)])}
    assert await ticker(table, rebalancing=True).tick() == 0
    assert await ticker(table, in_recovery=True).tick() == 0
