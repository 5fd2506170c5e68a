"""Test helpers shared by every suite."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    fn: Callable[[], Awaitable[T] | T],
    timeout: float = 30.0,
    interval: float = 0.2,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
) -> T:
    """Call ``fn`` (sync, async, or returning an awaitable) until it stops raising one of
    ``retry_on`` and return its value. After ``timeout`` seconds the last error is raised,
    so a failing test shows the assertion that never came true."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            result: Any = fn()
            if inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[no-any-return]
        except retry_on as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"not true after {timeout:.1f}s ({attempts} attempts): {exc!r}"
                ) from exc
        await asyncio.sleep(interval)


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (all held open until all are chosen)."""
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(int(s.getsockname()[1]))
    for s in socks:
        s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 15) -> int:
    """SIGTERM ``proc`` and wait up to ``grace_s`` for it; killed if it is still there. Its
    exit code (negative: the signal that ended it)."""
    proc.terminate()
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
