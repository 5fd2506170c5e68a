"""The coordinator's faust app takes the producer's linger it is configured with."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from processors.app import create_app
from processors.config import CoordinatorConfig


def test_the_producer_lingers_as_configured(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    default = create_app(settings, CoordinatorConfig())
    assert default.app.conf.producer_linger == 0.002
    tuned = create_app(settings, CoordinatorConfig(producer_linger_s=0.01))
    assert tuned.app.conf.producer_linger == 0.01
