"""What `docker build` would put into the AOB image, worked out without a Docker engine.

The Dockerfile's final stage is read for its ``WORKDIR``, ``COPY`` and ``RUN pip install``
steps; the build context is the project less what ``.dockerignore`` leaves out (matched by
docker-py's implementation of Docker's rules: anchored patterns, ``**``, ``!`` exceptions).
:func:`lay_out` writes exactly the copied files into a folder that stands for the image's
root, and :func:`check_image` installs them into a fresh virtualenv as the Dockerfile does and
imports every module of every package from there: a package the Dockerfile fails to copy
fails it. The check can also be run by hand against any Dockerfile::

    python -m tests.docker_build path/to/Dockerfile

Not understood (and refused loudly, rather than guessed): ``ADD`` of URLs or archives,
variables in paths, ``pip install`` options other than flags. docker-py matches
``.dockerignore`` patterns case-insensitively where Docker on Linux does not; AOB's patterns do
not depend on case.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from docker.utils.build import PatternMatcher
from docker.utils.fnmatch import fnmatchcase

PROJECT = Path(__file__).resolve().parent.parent
_COPY_FLAGS_IGNORED = ("--chown", "--chmod", "--link")
_WILDCARD = re.compile(r"[*?\[]")


class UnsupportedDockerfile(ValueError):
    """The Dockerfile uses something this reader does not model."""


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]  # relative to the build context
    dest: str  # absolute path in the image (WORKDIR applied)
    from_stage: str | None = None  # COPY --from=...: not from the build context


@dataclass(frozen=True)
class Install:
    targets: tuple[str, ...]  # absolute paths in the image


@dataclass
class Stage:
    base: str
    copies: list[Copy] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)
    user: str = "root"  # who the container runs as (the last USER)


# --- the Dockerfile ---------------------------------------------------------------------


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            logical.append(line[:-1].strip())
            continue
        logical.append(line)
        joined = " ".join(part for part in logical if part)
        logical = []
        keyword, _, rest = joined.partition(" ")
        yield keyword.upper(), rest.strip()
    if logical:
        raise UnsupportedDockerfile("the Dockerfile ends inside a continued line")


def _words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        words = json.loads(arguments)
        if not all(isinstance(w, str) for w in words):
            raise UnsupportedDockerfile(f"not a list of strings: {arguments}")
        return list(words)
    return arguments.split()


def _in_image(workdir: str, path: str) -> str:
    if "$" in path:
        raise UnsupportedDockerfile(f"variables in paths are not modelled: {path}")
    joined = PurePosixPath(workdir) / path  # an absolute path replaces workdir
    trailing = "/" if path.endswith("/") or path in {".", "./"} else ""
    return os.path.normpath(str(joined)) + trailing


def _copy(instruction: str, arguments: str, workdir: str) -> Copy:
    words = _words(arguments)
    from_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            from_stage = flag.removeprefix("--from=")
        elif not flag.startswith(_COPY_FLAGS_IGNORED):
            raise UnsupportedDockerfile(f"{instruction} {flag} is not modelled")
    if len(words) < 2:
        raise UnsupportedDockerfile(f"{instruction} needs a source and a destination")
    *sources, dest = words
    if instruction == "ADD" and any("://" in s or s.endswith((".tar", ".gz")) for s in sources):
        raise UnsupportedDockerfile(f"ADD of URLs or archives is not modelled: {arguments}")
    return Copy(tuple(sources), _in_image(workdir, dest), from_stage)


def _pip_install(command: str, workdir: str) -> Install | None:
    words = json.loads(command) if command.startswith("[") else shlex.split(command)
    for i in range(len(words) - 1):
        if words[i].endswith("pip") and words[i + 1] == "install":
            rest = words[i + 2 :]
            break
    else:
        return None
    targets: list[str] = []
    for word in rest:
        if word in {"&&", ";", "||"}:
            break
        if word.startswith("-"):
            if word in {"-r", "-c", "-e", "--requirement", "--constraint", "--editable"}:
                raise UnsupportedDockerfile(f"pip install {word} is not modelled")
            continue
        targets.append(_in_image(workdir, word).rstrip("/") or "/")
    return Install(tuple(targets))


def parse_dockerfile(text: str) -> Stage:
    """The final stage (the image that runs): what it copies and what it pip-installs."""
    stage: Stage | None = None
    workdir = "/"
    for instruction, arguments in _instructions(text):
        if instruction == "FROM":
            stage, workdir = Stage(base=arguments.split()[0]), "/"
        elif stage is None:
            continue  # ARG before the first FROM
        elif instruction == "WORKDIR":
            workdir = _in_image(workdir, arguments).rstrip("/") or "/"
        elif instruction in {"COPY", "ADD"}:
            stage.copies.append(_copy(instruction, arguments, workdir))
        elif instruction == "USER":
            stage.user = arguments.split(":")[0]
        elif instruction == "RUN":
            install = _pip_install(arguments, workdir)
            if install is not None:
                stage.installs.append(install)
    if stage is None:
        raise UnsupportedDockerfile("no FROM")
    return stage


# --- the build context ------------------------------------------------------------------


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(context: Path, patterns: list[str]) -> list[str]:
    """Paths (relative, ``/``-separated) of the files Docker sends as the build context."""
    files = (p for p in PatternMatcher(patterns).walk(str(context)) if (context / p).is_file())
    return sorted(p.replace(os.sep, "/") for p in files)


def _sources(source: str, files: list[str]) -> Iterator[tuple[str, str]]:
    """(context file, its path relative to what the source names) for one COPY source."""
    source = os.path.normpath(source).lstrip("/")
    if _WILDCARD.search(source):
        tops = {"/".join(f.split("/")[: source.count("/") + 1]) for f in files}
        matched = sorted(t for t in tops if fnmatchcase(t, source))
    else:
        matched = [source]
    for top in matched:
        if top == ".":
            yield from ((f, f) for f in files)
        elif top in files:
            yield top, PurePosixPath(top).name
        else:
            inside = [f for f in files if f.startswith(f"{top}/")]
            yield from ((f, f.removeprefix(f"{top}/")) for f in inside)


def lay_out(stage: Stage, context: Path, image_root: Path) -> list[str]:
    """Write what the stage copies from the context under ``image_root``; returns the paths
    written (absolute in the image). A source that matches nothing fails, as it does in
    Docker."""
    files = context_files(context, dockerignore_patterns(context))
    written: list[str] = []
    for copy in stage.copies:
        if copy.from_stage is not None:
            continue  # from another build stage: not the context's to prove
        into_dir = copy.dest.endswith("/") or len(copy.sources) > 1
        for source in copy.sources:
            pairs = list(_sources(source, files))
            if not pairs:
                raise FileNotFoundError(f"COPY {source}: not in the build context")
            single_file = len(pairs) == 1 and pairs[0][0] == os.path.normpath(source)
            for src, rel in pairs:
                if single_file and not into_dir:
                    dest = copy.dest
                else:
                    dest = f"{copy.dest.rstrip('/')}/{rel}"
                target = image_root / dest.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(context / src, target)
                written.append(dest)
    return written


# --- the install and the check ----------------------------------------------------------


def _pyproject(root: Path) -> dict[str, object]:
    with open(root / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def top_level_packages(root: Path) -> list[str]:
    """The packages pyproject.toml installs (its ``packages.find`` include list)."""
    found = _pyproject(root)["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    return sorted({name for name in found["include"] if "." not in name and "*" not in name})


def package_dir(root: Path, package: str) -> Path:
    """The folder of ``package``: under one of the folders ``packages.find`` looks in
    (its ``where``: the root, and ``sdk`` for the worker SDK's ``aob``)."""
    found = _pyproject(root)["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    for where in found.get("where", ["."]):
        folder = root / where / package
        if (folder / "__init__.py").is_file():
            return folder
    raise FileNotFoundError(f"package {package} is in none of {found.get('where', ['.'])}")


def module_name(root: Path, package: str, path: Path) -> str:
    """The dotted name of ``path``, a module of ``package`` (``__init__`` kept)."""
    base = package_dir(root, package).parent
    return ".".join(path.relative_to(base).with_suffix("").parts)


def package_files(root: Path) -> list[tuple[str, str]]:
    """Files of the project's packages that a wheel must carry (modules and package data):
    (path in the project, path in the wheel), which differ for a package not at the root."""
    setuptools = _pyproject(root)["tool"]["setuptools"]  # type: ignore[index]
    data = setuptools.get("package-data", {}).get("*", [])  # type: ignore[union-attr]
    out = []
    for package in top_level_packages(root):
        folder = package_dir(root, package)
        for path in folder.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or any(fnmatch.fnmatch(path.name, p) for p in data):
                out.append(
                    (path.relative_to(root).as_posix(), path.relative_to(folder.parent).as_posix())
                )
    return sorted(out)


def installed_files(root: Path) -> list[str]:
    """The paths in the wheel of the project's package files (``package_files``)."""
    return sorted(installed for _, installed in package_files(root))


_PROBE = """
import importlib, json, pkgutil, sys, traceback
packages = json.loads(sys.argv[1])
out = {"modules": {}, "errors": {}}
def load(name):
    try:
        out["modules"][name] = importlib.import_module(name).__file__
        return True
    except BaseException:
        out["errors"][name] = traceback.format_exc(limit=-3)
        return False
for package in packages:
    if load(package):
        for info in pkgutil.walk_packages(sys.modules[package].__path__, package + "."):
            load(info.name)
print(json.dumps(out))
"""


@dataclass
class ImageCheck:
    """What the virtualenv holding the image's install showed."""

    venv: Path
    site_packages: Path
    modules: dict[str, str]  # module -> the file it was imported from
    errors: dict[str, str]  # module -> the traceback of its import
    missing_files: list[str]  # project files the install does not carry
    help_returncode: int
    help_output: str

    def failures(self, required_modules: Iterable[str] = ()) -> list[str]:
        problems = [f"import {m} failed:\n{tb}" for m, tb in sorted(self.errors.items())]
        problems += [f"not installed: {f}" for f in self.missing_files]
        problems += [f"never imported: {m}" for m in required_modules if m not in self.modules]
        problems += [
            f"{m} came from {f}, not from the install"
            for m, f in sorted(self.modules.items())
            if not Path(f).resolve().is_relative_to(self.site_packages.resolve())
        ]
        if self.help_returncode != 0 or "Usage" not in self.help_output:
            problems.append(f"aob --help exited {self.help_returncode}:\n{self.help_output}")
        return problems


def _clean_env() -> dict[str, str]:
    """This process's environment without what would let the repository leak into the
    virtualenv (PYTHONPATH, an active virtualenv)."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_NO_CACHE_DIR"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def check_image(dockerfile_text: str, context: Path, workspace: Path) -> ImageCheck:
    """Lay out what the Dockerfile copies, pip-install it into a fresh virtualenv as the
    Dockerfile does (dependencies from the index, through pip's cache), then import every
    module of every package pyproject.toml names and run ``aob --help``, all from a folder
    outside the repository so that nothing resolves to the working tree."""
    stage = parse_dockerfile(dockerfile_text)
    if not stage.installs:
        raise UnsupportedDockerfile("the final stage runs no `pip install`")
    image_root = workspace / "image"
    lay_out(stage, context, image_root)
    env_dir = workspace / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = _clean_env()
    for install in stage.installs:
        targets = [str(image_root / t.lstrip("/")) for t in install.targets]
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *targets,
            ],
            check=True,
            cwd=workspace,
            env=env,
        )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
        cwd=workspace,
        env=env,
    ).stdout.strip()
    # The packages are the project's (pyproject.toml), not the install's: a package left out
    # of the image must show up as an import that fails.
    packages = top_level_packages(context)
    probe = subprocess.run(
        [str(python), "-c", _PROBE, json.dumps(packages)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workspace,
        env=env,
    )
    found = json.loads(probe.stdout)
    site_packages = Path(site)
    missing = [f for f in installed_files(context) if not (site_packages / f).is_file()]
    aob = subprocess.run(
        [str(env_dir / "bin" / "aob"), "--help"],
        capture_output=True,
        text=True,
        cwd=workspace,
        env=env,
        check=False,
    )
    return ImageCheck(
        venv=env_dir,
        site_packages=site_packages,
        modules=found["modules"],
        errors=found["errors"],
        missing_files=missing,
        help_returncode=aob.returncode,
        help_output=aob.stdout + aob.stderr,
    )


def main(argv: list[str]) -> int:
    dockerfile = Path(argv[0]) if argv else PROJECT / "Dockerfile"
    with tempfile.TemporaryDirectory(prefix="aob-image-") as tmp:
        result = check_image(dockerfile.read_text(), PROJECT, Path(tmp))
        problems = result.failures()
    print(f"{len(result.modules)} modules imported from the install")
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
