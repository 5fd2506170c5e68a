"""The running system's services as ``aob up`` started them: their specs and live pids."""

from __future__ import annotations

from infra.settings import Settings
from infra.stack import Stack
from infra.stack.process import ServiceSpec, owned_pid, pid_file


def spec_of(settings: Settings, name: str) -> ServiceSpec:
    """The service as ``aob up`` starts it (with the settings in its environment)."""
    return next(s for s in Stack(settings).services() if s.name == name)


def pid_of(settings: Settings, name: str) -> int | None:
    """The pid of the running service ``name``, if it runs."""
    return owned_pid(pid_file(settings, name), spec_of(settings, name).cmdline_match)
