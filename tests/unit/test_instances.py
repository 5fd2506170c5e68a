"""Several instances of a service on one machine (``aob up --scale``): names, ports, the
settings each instance runs with, and the scale kept between commands. Pure: nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.heartbeat import heartbeat_path
from infra.instances import (
    ScaleError,
    for_instance,
    parse_scale,
    save_scale,
    saved_scale,
)
from infra.settings import Settings
from infra.stack import Stack


def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, cache_dir=tmp_path / "cache")


def test_a_scale_names_services_and_counts() -> None:
    assert parse_scale("coordinator=2, workers=3,,projections=1") == {
        "coordinator": 2,
        "workers": 3,
        "projections": 1,
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("coordinator", "write SERVICE=N"),
        ("kafka=2", "'kafka' cannot be scaled"),
        ("scripted_llm=2", "cannot be scaled"),
        ("workers=0", "1..8"),
        ("workers=9", "1..8"),
        ("workers=two", "1..8"),
        ("workers=2,workers=3", "named twice"),
    ],
)
def test_a_scale_that_does_not_say_what_to_run_is_refused(text: str, says: str) -> None:
    with pytest.raises(ScaleError, match=says):
        parse_scale(text)


def test_an_instance_gets_its_ports_shifted_and_keeps_a_port_of_0(tmp_path: Path) -> None:
    base = settings(tmp_path).model_copy(update={"workers_metrics_port": 0})
    second = for_instance(base, 2)
    assert second.instance == 2
    assert second.command_api_port == base.command_api_port + 100
    assert second.coordinator_metrics_port == base.coordinator_metrics_port + 100
    assert second.workers_metrics_port == 0
    assert second.kafka_port == base.kafka_port  # the servers underneath are shared
    assert for_instance(base, 1) == base


def test_the_scale_is_kept_until_asked_again(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert saved_scale(s) == {}
    save_scale(s, {"workers": 2, "coordinator": 1})
    assert saved_scale(s) == {"workers": 2}
    save_scale(s, {"workers": 1})
    assert saved_scale(s) == {}


def test_the_stack_runs_each_instance_as_a_process_of_its_own(tmp_path: Path) -> None:
    s = settings(tmp_path)
    save_scale(s, {"coordinator": 2, "command_api": 2, "workers": 3})
    specs = {spec.name: spec for spec in Stack(s).services()}
    assert {"coordinator", "coordinator-2", "workers-2", "workers-3", "command_api-2"} <= set(specs)
    assert "projections-2" not in specs
    assert specs["coordinator-2"].env["AOB_INSTANCE"] == "2"
    assert specs["coordinator"].env["AOB_INSTANCE"] == "1"
    # The second command API answers on a port of its own, and says so.
    assert specs["command_api-2"].url == f"http://{s.host}:{s.command_api_port + 100}"
    assert specs["command_api-2"].env["AOB_COMMAND_API_PORT"] == str(s.command_api_port + 100)
    metrics = {spec.metrics_url for spec in specs.values() if spec.metrics_url}
    assert len(metrics) == len([spec for spec in specs.values() if spec.metrics_url])
    # Start order: every instance of a service before the next service.
    names = list(specs)
    assert names.index("coordinator-2") < names.index("workers")


def test_each_instance_beats_a_heartbeat_of_its_own(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert heartbeat_path(s, "workers").name == "workers.heartbeat"
    assert heartbeat_path(for_instance(s, 2), "workers").name == "workers-2.heartbeat"
