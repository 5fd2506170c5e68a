"""The layering the design promises, checked on the source (``ast``), not on what happens to
be imported at run time.

- The coordinator is one adapter around the run model: no package but ``processors`` itself
  imports ``processors`` (the domain lives in ``run_model``, beside ``schemas``).
- ``RunStatus`` and ``NodeStatus`` are defined by one class each (``run_model.state``);
  every other package uses those, so a status cannot mean two things.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_CODE = {"tests", "build", "dist"}


def packages() -> list[Path]:
    """The top-level packages of the project (a folder with ``__init__.py``), tests aside."""
    return sorted(
        p
        for p in ROOT.iterdir()
        if p.is_dir()
        and (p / "__init__.py").is_file()
        and p.name not in NOT_CODE
        and not p.name.startswith(".")
    )


def modules(package: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(package.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported(tree: ast.Module) -> Iterator[str]:
    """Every module named by an import statement (relative imports stay in their package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_the_project_has_the_packages_this_test_reads() -> None:
    names = {p.name for p in packages()}
    assert {"processors", "run_model", "schemas", "projections", "command_api"} <= names


def test_no_package_but_processors_imports_processors() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in packages()
        if package.name != "processors"
        for path, tree in modules(package)
        for name in imported(tree)
        if name == "processors" or name.startswith("processors.")
    ]
    assert not offenders, "the run model lives in run_model:\n" + "\n".join(offenders)


def test_run_and_node_statuses_are_defined_once() -> None:
    defined: dict[str, list[str]] = {"RunStatus": [], "NodeStatus": []}
    for package in packages():
        for path, tree in modules(package):
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name in defined:
                    defined[node.name].append(f"{path.relative_to(ROOT)}:{node.lineno}")
    files = {name: [place.split(":")[0] for place in places] for name, places in defined.items()}
    home = ["run_model/state.py"]
    assert files == {"RunStatus": home, "NodeStatus": home}, f"class definitions: {defined}"


def test_starting_a_run_imports_no_web_framework() -> None:
    """Run submission (``run_submission``) is shared by the REST routes, the coordinator's
    schedule clock and the subworkflow node's worker: neither of the latter serves HTTP, so
    importing it, or the schedule clock, must not bring in FastAPI."""
    import subprocess
    import sys

    code = (
        "import sys, run_submission, processors.schedule_clock, workers.handlers.subworkflow; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert found == "[]", f"these web modules were imported: {found}"
