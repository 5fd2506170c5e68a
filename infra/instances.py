"""Several instances of one service on one machine: ``aob up --scale coordinator=2,workers=2``.

Instance 1 of a service is the service as it always was: its name, its ports. Instance
``i > 1`` is named ``<service>-<i>`` (its pid file, log, heartbeat and ``aob status`` row) and
listens on each of the service's ports plus ``PORT_STEP * (i - 1)``: the second command API
answers on 18180 when the first is on 18080. Instances share everything else: they are
members of the same consumer groups (the coordinator through faust, the workers per node
type, the projector through its group), so Kafka spreads the partitions over them and hands a
dead member's partitions to the living.

The scale ``aob up`` was last asked for is kept under the stack's home, so that a later
``aob up`` or ``aob status`` sees the same instances and ``aob down`` stops all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.settings import Settings

# The services that may run as several instances (the scripted model is a test double, and
# the servers under them are scaled as their own projects say).
SCALABLE = ("projections", "coordinator", "workers", "query_api", "command_api")
PORT_STEP = 100
MAX_INSTANCES = 8  # so that the shifted ports stay clear of the next block of ports
PORT_FIELDS = (
    "command_api_port",
    "query_api_port",
    "coordinator_metrics_port",
    "workers_metrics_port",
    "projections_metrics_port",
)


class ScaleError(ValueError):
    """A ``--scale`` text that does not say what to run."""


def instance_name(service: str, instance: int) -> str:
    return service if instance == 1 else f"{service}-{instance}"


def for_instance(settings: Settings, instance: int) -> Settings:
    """The settings instance ``instance`` runs with: its number, and its ports shifted (a
    port set to 0, meaning none, stays 0)."""
    shifted = {
        name: getattr(settings, name) + PORT_STEP * (instance - 1)
        for name in PORT_FIELDS
        if getattr(settings, name)
    }
    return settings.model_copy(update={"instance": instance, **shifted})


def parse_scale(text: str) -> dict[str, int]:
    """``"coordinator=2,workers=3"`` as ``{"coordinator": 2, "workers": 3}``."""
    scale: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, count = part.partition("=")
        name = name.strip()
        if not sep:
            raise ScaleError(f"{part!r}: write SERVICE=N, e.g. coordinator=2")
        if name not in SCALABLE:
            raise ScaleError(f"{name!r} cannot be scaled; these can: {', '.join(SCALABLE)}")
        if not count.strip().isdigit() or not 1 <= int(count) <= MAX_INSTANCES:
            raise ScaleError(f"{name}={count.strip()}: give a whole number 1..{MAX_INSTANCES}")
        if name in scale:
            raise ScaleError(f"{name} is named twice")
        scale[name] = int(count)
    return scale


def _scale_file(settings: Settings) -> Path:
    return settings.home / "run" / "scale.json"


def saved_scale(settings: Settings) -> dict[str, int]:
    """The scale ``aob up`` was last asked for (nothing saved: one of each)."""
    try:
        raw = json.loads(_scale_file(settings).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        k: v
        for k, v in raw.items()
        if k in SCALABLE and isinstance(v, int) and 1 <= v <= MAX_INSTANCES
    }


def save_scale(settings: Settings, scale: dict[str, int]) -> None:
    path = _scale_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = {k: v for k, v in scale.items() if v > 1}
    if wanted:
        path.write_text(json.dumps(wanted, sort_keys=True) + "\n")
    else:
        path.unlink(missing_ok=True)
