"""A projector begins a batch at most every ``batch_every_s`` (projections.runner)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from projections.runner import DEFAULT_BATCH_EVERY_S, ProjectorConfig, pause_before_batch
from projections.settings import ProjectionsSettings


def test_the_first_batch_and_one_after_a_quiet_spell_begin_at_once() -> None:
    assert pause_before_batch(-math.inf, 0.025, 100.0) == 0.0
    assert pause_before_batch(100.0, 0.025, 100.5) == 0.0


def test_a_batch_right_after_another_waits_out_the_interval() -> None:
    assert pause_before_batch(100.0, 0.025, 100.010) == pytest.approx(0.015)
    assert pause_before_batch(100.0, 0.025, 100.0) == pytest.approx(0.025)


def test_a_batch_that_took_longer_than_the_interval_is_followed_at_once() -> None:
    # A backlog: the batch itself took 40 ms.
    assert pause_before_batch(100.0, 0.025, 100.040) == 0.0


def test_zero_takes_each_fetch_as_it_comes() -> None:
    assert pause_before_batch(100.0, 0.0, 100.0) == 0.0


def test_the_setting_is_in_milliseconds_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AOB_PROJECTIONS_BATCH_EVERY_MS", raising=False)
    assert ProjectionsSettings().batch_every_ms == DEFAULT_BATCH_EVERY_S * 1000
    assert ProjectorConfig(bootstrap="", dsn="").batch_every_s == DEFAULT_BATCH_EVERY_S
    monkeypatch.setenv("AOB_PROJECTIONS_BATCH_EVERY_MS", "0")
    assert ProjectionsSettings().batch_every_ms == 0
    monkeypatch.setenv("AOB_PROJECTIONS_BATCH_EVERY_MS", "-1")
    with pytest.raises(ValidationError):
        ProjectionsSettings()
