"""What the ``aob-sdk`` wheel carries besides ``aob``: the worker runtime, from the repository.

The SDK is not a second implementation: a worker built with it runs the engine's own runtime
(``workers``), speaks its wire contract (``schemas``) and uses its CAS, limits, templates
and secrets code. Those packages live at the repository's root, beside this folder, so this
build hook copies them into the wheel (hatchling's ``force_include``), leaving out what only
the built-in workers or the services use, so that the wheel needs none of their
dependencies (faust, FastAPI, Strawberry, the OpenAI client):

- the built-in node types' registry and process (``workers/builtins.py``,
  ``workers/__main__.py``), the agent node (``workers/agent``) and the wait_event node
  (``workers/handlers/wait_event.py``, which keeps its waits in the deployment's tables) and
  the subworkflow node (``workers/handlers/subworkflow.py``, which starts runs as the
  command side does);
- of ``infra``, everything but settings, the event bus, the liveness file and metrics (the
  local stack, the HTTP services, the scripted model).

``tests/unit/test_sdk_packaging.py`` checks that what ``aob.worker`` imports is all here.
The wheel is built from the repository (``pip install ./sdk``), not from an sdist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # the tests read runtime_files() without hatchling

    class BuildHookInterface:  # type: ignore[no-redef]
        pass


RUNTIME_PACKAGES = (
    "schemas",
    "cas",
    "limits",
    "templating",
    "secret_store",
    "node_types",
    "workers",
)
LEFT_OUT = (
    "workers/agent",
    "workers/builtins.py",
    "workers/__main__.py",
    "workers/handlers/wait_event.py",
    "workers/handlers/subworkflow.py",
)
INFRA_MODULES = ("__init__", "settings", "bus", "heartbeat", "instances", "metrics")


def runtime_files(repository: Path) -> dict[str, str]:
    """Every file of the runtime the wheel carries: its path in ``repository`` -> its path
    in the wheel."""
    files: dict[str, str] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((repository / package).rglob("*.py")):
            relative = path.relative_to(repository).as_posix()
            if "__pycache__" in relative or any(
                relative == out or relative.startswith(out + "/") for out in LEFT_OUT
            ):
                continue
            files[str(path)] = relative
    for module in INFRA_MODULES:
        files[str(repository / "infra" / f"{module}.py")] = f"infra/{module}.py"
    return files


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        repository = Path(self.root).resolve().parent
        build_data["force_include"].update(runtime_files(repository))
