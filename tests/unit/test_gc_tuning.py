"""infra.gc_tuning: the youngest generation is collected less often, what start-up built is
frozen, and the collector still frees cycles; 700 leaves CPython's defaults alone."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infra.gc_tuning import DEFAULT_GEN0, tune


@pytest.fixture(autouse=True)
def restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_tuned_the_collector_runs_less_often_and_still_frees_cycles() -> None:
    _, gen1, gen2 = gc.get_threshold()
    alive_at_start = object.__new__(Node)
    tune(50_000)
    assert gc.get_threshold() == (50_000, gen1, gen2)
    assert gc.get_freeze_count() > 0
    assert not any(o is alive_at_start for o in gc.get_objects()), "frozen: out of sight"

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None


def test_the_default_changes_nothing() -> None:
    before = gc.get_threshold()
    tune(DEFAULT_GEN0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
