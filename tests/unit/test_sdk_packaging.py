"""The ``aob-sdk`` distribution (``sdk/``) carries all a worker runs and asks for no more.

Its wheel holds ``aob`` and, copied by its build hook (``sdk/hatch_build.py``), the parts of
the repository that make the worker runtime. Checked without building: every project module
that ``aob.worker`` imports is carried, every third-party module the carried files import is
a dependency of the distribution, pinned as the repository pins it. The slow test builds the
wheel, installs it into a fresh virtualenv and serves ``--help`` from there.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import tomllib
import venv
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk"
PROJECT_PACKAGES = {
    "aob",
    "schemas",
    "cas",
    "limits",
    "templating",
    "secret_store",
    "node_types",
    "workers",
    "infra",
    "auth",
    "cli",
    "command_api",
    "query_api",
    "processors",
    "run_model",
    "projections",
    "read_model",
    "replay",
}
# Import names whose distribution is named otherwise.
DISTRIBUTIONS = {"jinja2": "jinja2", "prometheus_client": "prometheus-client"}


def hatch_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_hatch_build", SDK / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def carried() -> dict[str, str]:
    """Every file of the wheel: repository path -> path in the wheel."""
    files = {str(p): p.relative_to(SDK).as_posix() for p in (SDK / "aob").rglob("*.py")}
    files.update(hatch_build().runtime_files(ROOT))
    return files


def requirements(pyproject: Path, optional: bool = False) -> dict[str, Requirement]:
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    listed = list(project["dependencies"])
    if optional:
        listed += [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return {(req := Requirement(r)).name.lower(): req for r in listed}


def test_every_module_the_worker_imports_is_in_the_wheel() -> None:
    probe = (
        "import json, sys\n"
        "import aob.worker, aob.registration, aob.testing\n"
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{SDK}"},
        cwd=SDK,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = json.loads(result.stdout)
    ours = {
        name: file
        for name, file in imported.items()
        if name.split(".")[0] in PROJECT_PACKAGES and file is not None
    }
    assert "aob.worker" in ours and "workers.execute" in ours
    files = carried()
    missing = sorted(name for name, file in ours.items() if str(Path(file)) not in files)
    assert missing == [], "imported by a worker but not in the aob-sdk wheel"


def test_the_wheel_leaves_out_the_services_and_the_agent_node() -> None:
    wheel = set(carried().values())
    assert "workers/execute.py" in wheel and "aob/worker.py" in wheel
    assert "node_types/registry.py" in wheel
    assert not [f for f in wheel if f.startswith("workers/agent/")]
    assert "workers/builtins.py" not in wheel
    tops = {f.split("/")[0] for f in wheel}
    assert not tops & {"command_api", "query_api", "processors", "projections", "cli"}
    assert not [f for f in wheel if f.startswith("infra/stack/")]


def third_party_imports(files: list[Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        for n in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and not n.level and n.module:
                names = [n.module]
            for name in names:
                top = name.split(".")[0]
                if top not in PROJECT_PACKAGES and top not in sys.stdlib_module_names:
                    found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_library_the_wheel_imports_is_a_dependency_pinned_as_the_repositorys() -> None:
    sdk = requirements(SDK / "pyproject.toml")
    main = requirements(ROOT / "pyproject.toml")
    imports = third_party_imports([Path(f) for f in carried()])
    # pydantic_core comes with pydantic, at the version pydantic pins.
    imports.pop("pydantic_core", None)
    undeclared = {
        name: where[:2]
        for name, where in imports.items()
        if DISTRIBUTIONS.get(name, name).replace("_", "-").lower() not in sdk
    }
    assert undeclared == {}, "imported by the aob-sdk wheel but not among its dependencies"
    for name, req in sdk.items():
        assert name in main, f"{name}: a dependency of aob-sdk that AOB does not have"
        assert req.specifier == main[name].specifier, f"{name}: pinned otherwise than in AOB"
    for banned in ("faust-streaming", "fastapi", "strawberry-graphql", "openai", "uvicorn"):
        assert banned not in sdk


@pytest.mark.slow
def test_the_wheel_installs_alone_and_serves(tmp_path: Path) -> None:
    """Built and installed as a user would (``pip install ./sdk``) into a fresh virtualenv
    (dependencies from the index, through pip's cache): the worker's command runs from
    there, importing nothing from the repository."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(SDK)],
        check=True,
        cwd=tmp_path,
        env={**clean, "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip")},
        timeout=600,
    )
    probe = (
        "import aob.worker, workers.execute, sys, json\n"
        "names = ('faust', 'fastapi', 'strawberry', 'openai')\n"
        "print(json.dumps([aob.worker.__file__, [n for n in names if n in sys.modules]]))"
    )
    out = subprocess.run(
        [str(python), "-c", probe],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    where, services = json.loads(out.stdout)
    assert Path(where).is_relative_to(env_dir), where
    assert services == []
    helped = subprocess.run(
        [str(env_dir / "bin" / "aob-worker"), "--help"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    assert "module" in helped.stdout
