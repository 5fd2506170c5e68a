"""infra.memory_release: freed memory is given back once, after a quiet spell that follows
work, and never while work goes on."""

from __future__ import annotations

import platform

import pytest

from infra import memory_release
from infra.memory_release import MemoryRelease, release_free_memory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []

    def trim(pad: int) -> int:
        made.append(pad)
        return 1

    monkeypatch.setattr(memory_release, "_TRIM", trim)
    return made


async def test_released_once_after_the_quiet_spell_that_follows_work(calls: list[int]) -> None:
    clock = Clock()
    release = MemoryRelease(2.0, clock)
    await release.release_if_due()
    assert calls == [], "nothing was done yet: nothing to give back"

    release.worked()
    clock.now += 1.9
    await release.release_if_due()
    assert calls == [], "not quiet long enough"
    release.worked()  # work again: the spell starts over
    clock.now += 1.9
    await release.release_if_due()
    assert calls == []

    clock.now += 0.1
    await release.release_if_due()
    assert calls == [0] and release.releases == 1
    clock.now += 60
    await release.release_if_due()
    assert calls == [0], "once per quiet spell, not once per check"


async def test_zero_turns_it_off(calls: list[int]) -> None:
    clock = Clock()
    release = MemoryRelease(0, clock)
    release.worked()
    clock.now += 3600
    await release.release_if_due()
    assert calls == [] and release.releases == 0


def test_the_real_call_answers_without_glibc_too(monkeypatch: pytest.MonkeyPatch) -> None:
    if platform.libc_ver()[0] == "glibc":
        assert isinstance(release_free_memory(), bool)  # the C library's own malloc_trim
    monkeypatch.setattr(memory_release, "_TRIM", None)
    assert release_free_memory() is False
