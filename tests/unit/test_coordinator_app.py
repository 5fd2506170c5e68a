"""The coordinator's faust app: what its producer must not do."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from processors.app import create_app
from processors.config import CoordinatorConfig


def test_the_producer_sends_a_batch_at_once(tmp_path: Path) -> None:
    # A linger let a task's records go to the broker ahead of the run.node_scheduled that
    # schedules it, and a worker's outcome then came before that schedule in the run's log.
    parts = create_app(Settings(home=tmp_path), CoordinatorConfig())
    assert parts.app.conf.producer_linger == 0.0
