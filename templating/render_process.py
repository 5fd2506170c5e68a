"""What runs inside a render process of ``templating.renders``: its limits, and one render.

A process is confined once, when it starts (``confine``): its address space may grow by the
configured budget over what it holds at that moment (the interpreter, Jinja and the sandbox,
about 26 MiB), and it writes no core file when it dies. Past the budget an allocation fails:
Python raises ``MemoryError``, which ends the render, and the process answers "out of
memory"; the pool then replaces it, because what the failed render grew is not all given
back (measured: most of it stays until the cyclic collector runs, a few tens of MiB after),
and the next render deserves its whole budget.

The time limit is the pool's: it kills a process whose render runs too long. Should the pool
be gone (its worker killed outright), a CPU limit set afresh before each render ends a
render that runs on alone: the system sends SIGXCPU once the render has used
``cpu_backstop_s`` of CPU time, which it cannot reach before the pool's own limit.

Each process serves one pipe (``serve``), one request at a time. ``run`` answers with plain
tuples, never with an exception object: an exception whose constructor takes other arguments
than its ``args`` (``TemplateError`` does) pickles, but does not unpickle in the parent.

This module is imported by every render process, so it imports only what a render needs.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from templating import render
from templating.errors import TemplateError

# What a render is asked to do.
VALUE = "value"  # render.render_value
STRING = "string"  # render.render_string
EXPRESSION = "expression"  # render.evaluate_json

# The first message of a process: (READY, its address space in bytes, or None).
READY = "ready"

# How a render ended: (RENDERED, value) | (FAILED, expression, cause)
#                   | (OUT_OF_MEMORY, expression or None when not known)
RENDERED = "rendered"
FAILED = "failed"
OUT_OF_MEMORY = "out of memory"

_RENDERERS: dict[str, Callable[[Any, Mapping[str, Any]], Any]] = {
    VALUE: render.render_value,
    STRING: render.render_string,
    EXPRESSION: render.evaluate_json,
}


def address_space_bytes() -> int | None:
    """This process's virtual memory size (what ``RLIMIT_AS`` limits), or None where the
    system does not tell (no ``/proc``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


_cpu_backstop_s = 0


def confine(memory_bytes: int, cpu_backstop_s: int) -> None:
    """Limit this process (the pool's initializer): ``memory_bytes`` of address space on
    top of what it holds now, ``cpu_backstop_s`` of CPU time per render, no core files.
    Where the address space cannot be measured (no ``/proc``), it is not limited."""
    global _cpu_backstop_s  # noqa: PLW0603 - set once per process, read by every render
    _cpu_backstop_s = cpu_backstop_s
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    used = address_space_bytes()
    if used is None:
        return
    limit = used + memory_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    # Soft and hard alike: nothing in this process may raise it again.
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve(conn: Connection, memory_bytes: int, cpu_backstop_s: int) -> None:
    """A render process's life: confined, ready (said on ``conn``), then one answer for
    each request, until the pool closes its end (or kills it)."""
    # A terminal's Ctrl-C reaches the whole process group: it is for the worker, which
    # then stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    confine(memory_bytes, cpu_backstop_s)
    conn.send((READY, address_space_bytes()))
    while True:
        answer: tuple[Any, ...]
        try:
            request = conn.recv()
        except EOFError:
            return
        except MemoryError:  # the request alone is over the budget
            answer = (OUT_OF_MEMORY, None)
        else:
            answer = run(*request)
        try:
            conn.send(answer)
        except MemoryError:  # so is the answer
            conn.send((OUT_OF_MEMORY, None))


def run(kind: str, source: Any, context: Mapping[str, Any]) -> tuple[Any, ...]:
    """Render ``source`` over ``context`` as ``kind`` says; the outcome as plain data."""
    if _cpu_backstop_s:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + 1 + _cpu_backstop_s
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    try:
        return (RENDERED, _RENDERERS[kind](source, context))
    except TemplateError as e:
        if isinstance(e.__cause__, MemoryError):
            return (OUT_OF_MEMORY, e.expression)
        return (FAILED, e.expression, e.cause)
    except MemoryError:  # met outside the template's own code: which one is not known
        return (OUT_OF_MEMORY, None)
