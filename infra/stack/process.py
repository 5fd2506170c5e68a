"""Generic process layer: a service is described by a :class:`ServiceSpec` and started detached.

Every process the stack starts gets a pid file ``<home>/run/<name>.pid`` and a log file
``<home>/logs/<name>.log``. A pid file is trusted only while ``/proc/<pid>/cmdline`` still
contains the spec's ``match`` text, so a recycled pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.settings import Settings
from infra.stack.errors import StackError

HealthCheck = Callable[[], Awaitable[bool]]


@dataclass
class ServiceSpec:
    """One long-running process of the stack.

    ``argv`` is executed directly (no shell) with ``env`` added to the environment. ``health``
    answers whether the service is up and serving. ``match`` is a piece of the command line
    that identifies our process in ``/proc``; it defaults to the last argument of ``argv``.
    """

    name: str
    argv: Sequence[str]
    health: HealthCheck
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    match: str | None = None
    start_timeout: float = 60.0
    metrics_url: str | None = None  # where it serves Prometheus text, if it does
    stop_timeout: float = 15.0

    @property
    def cmdline_match(self) -> str:
        return self.match or str(self.argv[-1])


def run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def log_dir(settings: Settings) -> Path:
    return settings.home / "logs"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return log_dir(settings) / f"{name}.log"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def owned_pid(path: Path, match: str) -> int | None:
    """The pid in ``path`` if that process is alive and still the one we started."""
    pid = read_pid(path)
    if pid is None or not pid_alive(pid):
        return None
    return pid if match in cmdline(pid) else None


def clear_stale(path: Path, match: str) -> None:
    if path.exists() and owned_pid(path, match) is None:
        path.unlink(missing_ok=True)


def start_detached(settings: Settings, spec: ServiceSpec) -> int:
    """Start ``spec`` in its own session, output appended to its log file; returns the pid."""
    run_dir(settings).mkdir(parents=True, exist_ok=True)
    log_dir(settings).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with open(log_file(settings, spec.name), "ab") as out:
        out.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {spec.name}: {exc}") from exc
    pid_file(settings, spec.name).write_text(f"{proc.pid}\n")
    return proc.pid


async def wait_healthy(
    settings: Settings, spec: ServiceSpec, pid: int | None, timeout: float | None = None
) -> None:
    deadline = time.monotonic() + (timeout or spec.start_timeout)
    while time.monotonic() < deadline:
        if await spec.health():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(
                f"{spec.name} exited during start-up; see {log_file(settings, spec.name)}"
            )
        await asyncio.sleep(0.25)
    raise StackError(
        f"{spec.name} did not become healthy within {timeout or spec.start_timeout:.0f}s; "
        f"see {log_file(settings, spec.name)}"
    )


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. Signals the process group we created."""

    def send(sig: signal.Signals) -> None:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_spec(settings: Settings, spec: ServiceSpec) -> bool:
    """Stop the process of ``spec`` if it is ours. Returns whether something was stopped."""
    path = pid_file(settings, spec.name)
    pid = owned_pid(path, spec.cmdline_match)
    if pid is not None:
        terminate(pid, spec.stop_timeout)
    path.unlink(missing_ok=True)
    return pid is not None


async def ensure_running(settings: Settings, spec: ServiceSpec) -> tuple[int | None, bool]:
    """Leave a healthy service alone, else (re)start it. Returns (pid, started)."""
    path = pid_file(settings, spec.name)
    pid = owned_pid(path, spec.cmdline_match)
    if await spec.health():
        return pid, False
    if pid is not None:
        # Ours and alive but not healthy (yet): give it its start-up time before giving up.
        await wait_healthy(settings, spec, pid)
        return pid, False
    path.unlink(missing_ok=True)
    pid = start_detached(settings, spec)
    await wait_healthy(settings, spec, pid)
    return pid, True


async def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
