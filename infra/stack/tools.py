"""Finding (and, as root on Debian, installing) the programs the local stack runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from infra.stack.errors import MissingPrerequisite, StackError
from infra.stack.progress import Progress

_apt_updated = False
_apt_lock = threading.Lock()  # components install concurrently; dpkg allows one


def can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str], progress: Progress) -> None:
    with _apt_lock:
        _apt_install(packages, progress)


def _apt_install(packages: list[str], progress: Progress) -> None:
    global _apt_updated  # noqa: PLW0603
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with progress.step(f"installing {' '.join(packages)} (apt-get)…"):
        cmds = [] if _apt_updated else [["apt-get", "update", "-q"]]
        cmds.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
        for cmd in cmds:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
                raise StackError(f"`{' '.join(cmd)}` failed: {tail[0]}")
        _apt_updated = True


def require(program: str, apt_packages: list[str] | None, progress: Progress, hint: str) -> str:
    """Path of ``program``; installs ``apt_packages`` first when missing and allowed."""
    found = shutil.which(program)
    if found:
        return found
    if apt_packages and can_apt():
        apt_install(apt_packages, progress)
        found = shutil.which(program)
        if found:
            return found
    raise MissingPrerequisite(f"`{program}` not found: install {hint}, then run again")
