"""The AOB image holds every package and each service starts from it, proven without Docker.

The slow test lays out exactly what the Dockerfile copies (its COPY lines and .dockerignore),
installs that into a fresh virtualenv as the Dockerfile does, and imports every module of every
package from the install, and runs ``aob --help`` (tests/docker_build.py). The fast tests pin
down the reading of the Dockerfile and of .dockerignore that the slow one relies on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker_build import (
    PROJECT,
    check_image,
    context_files,
    dockerignore_patterns,
    lay_out,
    module_name,
    package_dir,
    package_files,
    parse_dockerfile,
    top_level_packages,
)

DOCKERFILE = (PROJECT / "Dockerfile").read_text()


def service_entry_modules() -> list[str]:
    """The modules the image's users start: every ``python -m X`` that docker-compose.yml
    runs, every package's ``__main__``, and the ``aob`` console script's module."""
    modules = {"cli.main"}
    compose = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["python", "-m"]:
            modules.add(f"{command[2]}.__main__")
    for package in top_level_packages(PROJECT):
        for main in package_dir(PROJECT, package).rglob("__main__.py"):
            modules.add(module_name(PROJECT, package, main))
    return sorted(modules)


# --- the Dockerfile and .dockerignore ---------------------------------------------------


def test_the_image_copies_the_whole_project_and_names_no_package() -> None:
    stage = parse_dockerfile(DOCKERFILE)
    from_context = [c for c in stage.copies if c.from_stage is None]
    assert [c.sources for c in from_context] == [(".",)], "copy the project as a whole"
    (install,) = stage.installs
    assert install.targets == (from_context[0].dest.rstrip("/"),)


def test_the_services_run_unprivileged() -> None:
    assert parse_dockerfile(DOCKERFILE).user not in {"root", "0"}


def test_the_context_leaves_out_environments_caches_and_tests() -> None:
    files = context_files(PROJECT, dockerignore_patterns(PROJECT))
    tops = {f.split("/")[0] for f in files}
    folders = {
        package_dir(PROJECT, p).relative_to(PROJECT).parts[0] for p in top_level_packages(PROJECT)
    }
    assert folders <= tops
    assert {"pyproject.toml", "README.md"} <= tops
    assert not tops & {".git", ".venv", "tests", "build", "dist", ".pytest_cache"}
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".egg-info"))]


def test_the_layout_carries_every_module_and_package_file(tmp_path: Path) -> None:
    stage = parse_dockerfile(DOCKERFILE)
    lay_out(stage, PROJECT, tmp_path)
    app = tmp_path / stage.installs[0].targets[0].lstrip("/")
    missing = [f for f, _ in package_files(PROJECT) if not (app / f).is_file()]
    assert missing == []


def _context(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_dockerfile_that_lists_packages_misses_a_new_one(tmp_path: Path) -> None:
    # The trap the whole-project COPY removes: `replay/` was missing this way.
    context = _context(
        tmp_path / "ctx",
        {"pyproject.toml": "", "old/__init__.py": "", "new/__init__.py": "", "new/x.py": ""},
    )
    stage = parse_dockerfile(
        "FROM python\nWORKDIR /app\nCOPY pyproject.toml ./\nCOPY old ./old\nRUN pip install .\n"
    )
    written = lay_out(stage, context, tmp_path / "image")
    assert sorted(written) == ["/app/old/__init__.py", "/app/pyproject.toml"]
    assert stage.installs[0].targets == ("/app",)


def test_dockerignore_rules_anchors_double_stars_and_exceptions(tmp_path: Path) -> None:
    context = _context(
        tmp_path,
        {
            ".dockerignore": "# comment\ntests\n**/__pycache__\n*.log\n!keep.log\n",
            "tests/test_a.py": "",
            "pkg/tests/data.json": "",  # `tests` is anchored at the root
            "pkg/__pycache__/m.pyc": "",
            "deep/a/b/__pycache__/m.pyc": "",
            "pkg/m.py": "",
            "debug.log": "",
            "keep.log": "",
            "pkg/debug.log": "",  # `*.log` does not reach below the root
        },
    )
    assert context_files(context, dockerignore_patterns(context)) == [
        ".dockerignore",
        "keep.log",
        "pkg/debug.log",
        "pkg/m.py",
        "pkg/tests/data.json",
    ]


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        # A file into a folder, a folder's contents into a folder, a wildcard.
        ("COPY a.txt b.txt ./\n", ["/w/a.txt", "/w/b.txt"]),
        ("COPY pkg ./lib\n", ["/w/lib/m.py", "/w/lib/sub/n.py"]),
        ("COPY *.txt /etc/\n", ["/etc/a.txt", "/etc/b.txt"]),
        ("COPY a.txt renamed.txt\n", ["/w/renamed.txt"]),
        ('COPY ["pkg/sub", "/opt/sub"]\n', ["/opt/sub/n.py"]),
        ("COPY --from=bundle /dist ./static\nCOPY --chown=1:1 a.txt ./\n", ["/w/a.txt"]),
    ],
)
def test_copy_follows_dockers_rules(tmp_path: Path, dockerfile: str, expected: list[str]) -> None:
    context = _context(
        tmp_path / "ctx",
        {"a.txt": "", "b.txt": "", "pkg/m.py": "", "pkg/sub/n.py": ""},
    )
    stage = parse_dockerfile(f"FROM x AS build\nWORKDIR /no\nFROM y\nWORKDIR /w\n{dockerfile}")
    assert sorted(lay_out(stage, context, tmp_path / "image")) == expected


def test_a_source_missing_from_the_context_fails_as_in_docker(tmp_path: Path) -> None:
    context = _context(tmp_path / "ctx", {".dockerignore": "replay\n", "replay/x.py": ""})
    with pytest.raises(FileNotFoundError, match="replay"):
        lay_out(parse_dockerfile("FROM y\nCOPY replay /app/replay\n"), context, tmp_path / "i")


# --- the image's install ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_service_imports_from_the_images_install(
    tmp_path: Path, figures: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    result = check_image(DOCKERFILE, PROJECT, tmp_path)
    figures.append({"docker image check (venv, install, imports) s": time.monotonic() - started})
    assert result.failures(service_entry_modules()) == []
    assert len(result.modules) > len(top_level_packages(PROJECT))
