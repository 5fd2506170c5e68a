"""Giving the memory a burst of work freed back to the operating system.

CPython keeps the memory of freed objects for reuse: its small-object arenas go back only
when wholly empty, and glibc's malloc keeps freed chunks of its heaps. A service that went
through a backlog (the coordinator, holding thousands of live runs at once) so stays at its
high-water mark long after the runs finished, and its resident memory tells nothing about
what it holds. ``malloc_trim(0)`` returns glibc's free pages, anywhere in its heaps; it is
called once the service has been quiet for a while after work, never on the hot path, and
in a thread (ctypes releases the GIL while it runs). Where the C library is not glibc, it
does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("aob.memory")


def _glibc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _glibc_trim()


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; whether any were (False without glibc)."""
    return bool(_TRIM(0)) if _TRIM is not None else False


class MemoryRelease:
    """Calls ``release_free_memory`` once, ``quiet_s`` after the last work noted with
    ``worked``; ``quiet_s`` 0 turns it off."""

    def __init__(self, quiet_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self.clock = clock
        self.last_work: float | None = None  # None: nothing since the last release
        self.releases = 0

    def worked(self) -> None:
        if self.quiet_s > 0:
            self.last_work = self.clock()

    def due(self) -> bool:
        return self.last_work is not None and self.clock() - self.last_work >= self.quiet_s

    async def release_if_due(self) -> None:
        if not self.due():
            return
        self.last_work = None
        released = await asyncio.to_thread(release_free_memory)
        self.releases += 1
        log.debug("after %.1f s quiet, memory given back to the system: %s", self.quiet_s, released)
