"""Templates rendered in a pool of confined processes, stopped at a time and a memory limit.

This is how the workers render: ``await renders.render_value(config, context)``,
``render_string`` (a prompt) and ``evaluate`` (a condition), each raising ``TemplateError``.

Why processes. The sandbox (``templating.sandbox``) decides what a template may touch and
refuses the few operations that blow up at once (``*``, ``**``, ``range``); the output budget
(``templating.render``) caps what comes out. Neither bounds what a template builds on the
way: ``~``, ``+``, ``join``, ``replace``, ``center``, ``format``, ``%``, string methods,
nested loops and recursive macros build values of any size in any time (a 300-character
template built a 1 GB string). Python cannot stop code that runs inside one C call, nor take
a thread back: a render that timed out under ``asyncio.to_thread`` kept its thread, and six
of them starved the default executor that the CAS and DNS calls share, which stopped the
worker for everyone. A process can be killed, and the system counts its memory.

Limits (``templating.limits.RenderLimits``, environment ``AOB_TEMPLATE_*``):

- ``AOB_TEMPLATE_TIMEOUT_S`` (2): wall-clock time of one render, counted from when a process
  takes it (a render waiting for a free process is not charged). Past it the process is
  killed and replaced: ``RenderStopped``, "the template ran longer than 2 s and was stopped".
- ``AOB_TEMPLATE_MEMORY_MIB`` (256): address space a render process may take over what it
  holds when it is ready (measured: 26 MiB, the interpreter, Jinja and the sandbox, on Linux
  with CPython 3.11; about 45 MiB under pytest, whose script every child imports). Past it
  an allocation fails: "the template needed more than 256 MiB and was stopped", and the
  process is replaced. Without ``/proc`` (not Linux) the address space is not measured, and
  only the time limit applies.
- ``AOB_TEMPLATE_PROCESSES`` (2): renders that run at the same time; more wait their turn.
- ``AOB_TEMPLATE_RENDERS_PER_PROCESS`` (1000): a process is replaced after that many renders.

A process that dies during a render (a crash, the system's out-of-memory killer) fails that
render only (``RenderStopped`` with ``limit="process"``) and is replaced. Every
``RenderStopped`` is a ``TemplateError``: the same template fails the same way again, so the
worker reports a non-retryable NodeFailed. A render whose caller gives up (the node's own
timeout, the worker stopping) has its process killed and replaced too: nothing keeps running.
Should the worker itself be killed outright, its render processes end by themselves: an idle
one at the end of its pipe, a busy one at a CPU limit (``render_process``).

The cheap checks of the sandbox and the output budget stay: they refuse the obvious bombs
early, with a message that says what was wrong.

Fast path. Most configs hold no template at all (a noop's, plain transform values): a value
with no ``{`` in any of its strings is rendered in this process (a walk over it, no pickling,
no process), so only real templates pay for the pool. Condition expressions always go to the
pool: any expression can loop. Measured on 2 cores (1,000 small renders, a worker-like
``python -m`` process): about 0.2 ms a render one at a time, against 0.03 ms in process and
0.13-0.22 ms for the ``asyncio.to_thread`` this replaced; 0.15-0.2 ms each when 1,000 run at
once; a template-free value takes 0.01 ms. Starting the pool takes about 0.12 s; a process
killed at its limit is replaced in about 11 ms.

How. One pipe per process, so the pool knows which process runs which render: the render
waits for its answer on the event loop (``add_reader``, under ``asyncio.timeout``), and
whatever goes wrong is settled on that one process, which is killed (if need be) and
replaced by a thread of the pool's own, off the event loop. Processes start from a fork
server that has imported the templating code once (start method ``forkserver``): a fresh
process is ready in about 10 ms, where ``spawn`` imports Jinja again each time (about
0.1 s) and ``fork`` would copy a worker's threads' locks in whatever state they were in.

Why not pebble. Its ``ProcessPool`` was the first choice (a per-task timeout that kills and
replaces the process), but it could not do two things this pool must: retire one process
after it answered (a process whose render ran out of memory kept 64-128 MiB of the 128 it
was allowed, so the next render in it, anyone's, failed at once), and survive a process
that ends while idle (it then declares the whole pool broken and fails every queued task).
Its shared pipe also hides which process runs which task, its timer polls every 0.1 s, and
it keeps three threads in the worker.

Lifetime. One pool per process (``default_pool``), started by ``start()`` (the worker calls
it when it starts, so the first render waits for nothing) or by the first renders, and
stopped by ``shutdown()``. It serves the tasks of one event loop, any number at once; a pool
whose loop was closed is replaced by the next ``default_pool()``. Renders still waiting or
running when it is shut down fail with ``RenderPoolError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import signal
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from templating import render, render_process
from templating.errors import RenderPoolError, RenderStopped, TemplateError
from templating.limits import RenderLimits

log = logging.getLogger(__name__)

MIB = 1024 * 1024
START_TIMEOUT_S = 60  # a fork takes milliseconds; this is for a machine under heavy load


def needs_rendering(value: Any) -> bool:
    """Whether any string in ``value`` (dict values and list items, at any depth) has a
    ``{``: without one there is no template syntax, and rendering gives the value back."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "{" in item:
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def describe(source: Any, limit: int = 1000) -> str:
    """What a ``TemplateError`` shows for ``source``: the text itself when it is one string,
    else its ``repr`` (a whole config), cut at ``limit`` characters."""
    text = source if isinstance(source, str) else repr(source)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _process_context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The fork server imports this once; each render process is a fork of it.
    context.set_forkserver_preload([render_process.__name__])
    return context


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is None or exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"
    if -exitcode == signal.SIGXCPU:
        return f"{name}: it used more CPU time than a render may"
    if -exitcode == signal.SIGKILL:
        return f"{name}, as the system's out-of-memory killer sends"
    return name


class _Process:
    """A render process and the parent's end of its pipe."""

    def __init__(self, context: Any, memory_bytes: int, cpu_backstop_s: int) -> None:
        ours, theirs = context.Pipe()
        self.process = context.Process(
            target=render_process.serve,
            args=(theirs, memory_bytes, cpu_backstop_s),
            name="aob-render",
            daemon=True,  # ended by multiprocessing if the worker exits without closing
        )
        self.process.start()
        theirs.close()
        self.conn: Connection = ours
        self.pid: int = self.process.pid
        self.renders = 0
        self.exitcode: int | None = None
        # Ready once it says so: a fresh process may still be importing (the fork server's
        # children import the parent's main script, e.g. pytest's, before anything else).
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise RenderPoolError(f"a render process took over {START_TIMEOUT_S} s to start")
            status, self.address_space = ours.recv()
            if status != render_process.READY:
                raise RenderPoolError(f"a render process began with {status!r}")
        except BaseException:
            self.stop()
            raise

    def alive(self) -> bool:
        try:
            return bool(self.process.is_alive())
        except ValueError:  # closed: stopped by the pool's close
            return False

    def stop(self, *, close_pipe: bool = True) -> None:
        """Kill it (if it still runs) and wait until it is gone; keeps its exit code."""
        if close_pipe:
            self.conn.close()
        if self.process.is_alive():  # never signal a pid that may have been reused
            self.process.kill()
        self.process.join()
        self.exitcode = self.process.exitcode
        self.process.close()


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RenderPool:
    """Render processes under ``limits`` (``RenderLimits()``, the environment's, if None)."""

    def __init__(self, limits: RenderLimits | None = None) -> None:
        self.limits = limits if limits is not None else RenderLimits()
        self._context = _process_context()
        # Idle processes; None stands for a process not started yet (or that failed to).
        self._idle: asyncio.Queue[_Process | None] = asyncio.Queue()
        for _ in range(self.limits.processes):
            self._idle.put_nowait(None)
        self._processes: set[_Process] = set()
        self._lock = threading.Lock()  # guards _processes, also changed by the spawner
        # Starting and stopping processes blocks (a fork, a join): never on the event loop.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aob-render-pool")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- what callers use -----------------------------------------------------------------

    async def render_value(self, value: Any, context: Mapping[str, Any]) -> Any:
        """``render.render_value`` under the limits."""
        if not needs_rendering(value):
            return render.render_value(value, context)
        return await self._render(render_process.VALUE, value, context)

    async def render_string(self, source: str, context: Mapping[str, Any]) -> str:
        """``render.render_string`` under the limits."""
        if "{" not in source:
            return render.render_string(source, context)
        text: str = await self._render(render_process.STRING, source, context)
        return text

    async def evaluate(self, expr: str, context: Mapping[str, Any]) -> Any:
        """``render.evaluate_json`` under the limits: the expression's value as JSON."""
        return await self._render(render_process.EXPRESSION, expr, context)

    def start(self) -> None:
        """Start the processes now (blocking) rather than for the first renders: about 0.1 s
        the first time in a process (the fork server starts and imports the templating
        code), a few milliseconds for each process. Call it before the event loop renders."""
        for _ in range(self._idle.qsize()):
            process = self._idle.get_nowait()
            try:
                if process is None:
                    process = self._new_process()
            finally:
                self._idle.put_nowait(process)

    def close(self) -> None:
        """Stop every process (blocking). Renders waiting or running fail with
        ``RenderPoolError``, and so do later ones."""
        self._closed = True
        self._spawner.shutdown(wait=True)  # nothing starts a process after this
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            # A busy process's pipe is the business of the render waiting on it, which
            # sees it end; the pipes are closed as they are collected.
            self._stop(process, close_pipe=False)

    async def aclose(self) -> None:
        """``close``, off the event loop."""
        await asyncio.to_thread(self.close)

    @property
    def pids(self) -> frozenset[int]:
        """The render processes the pool has now, idle or busy."""
        with self._lock:
            return frozenset(p.pid for p in self._processes)

    def serves_a_closed_loop(self) -> bool:
        return self._loop is not None and self._loop.is_closed()

    # --- how -------------------------------------------------------------------------------

    async def _render(self, kind: str, source: Any, context: Mapping[str, Any]) -> Any:
        self._check_loop()
        try:
            request = ForkingPickler.dumps((kind, source, context))
        except Exception as e:  # a context that is not JSON-like: the caller's fault
            raise RenderPoolError(f"the render's context cannot be sent: {e!r}") from e
        for _ in range(2):
            process = await self._take()
            try:
                process.conn.send_bytes(request)
            except OSError:  # it died while idle, just now: try another
                self._replace(process)
                continue
            return await self._answer(process, source)
        raise RenderPoolError("render processes died before they were given a render")

    async def _answer(self, process: _Process, source: Any) -> Any:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = process.conn.fileno()
        loop.add_reader(fd, _set, readable)
        try:
            try:
                async with asyncio.timeout(self.limits.timeout_s):
                    await readable
            finally:
                # Before anything may close the pipe: a closed descriptor left in the
                # loop's selector would confuse it once the number is reused.
                loop.remove_reader(fd)
            answer = process.conn.recv()
        except TimeoutError:
            self._replace(process)
            cause = f"the template ran longer than {self.limits.timeout_s:g} s and was stopped"
            raise RenderStopped(describe(source), cause, "time") from None
        except (EOFError, OSError) as e:  # it died during the render
            await asyncio.wait([self._replace(process)])  # to learn how it died
            if self._closed:
                raise RenderPoolError("the render pool was shut down") from None
            how = _how_it_died(process.exitcode)
            cause = f"the template's process died ({how}) and was replaced"
            raise RenderStopped(describe(source), cause, "process") from e
        except BaseException:  # the caller gave up (cancelled): the render must not go on
            self._replace(process)
            raise
        process.renders += 1
        status = answer[0]
        most = self.limits.renders_per_process
        if status == render_process.OUT_OF_MEMORY or (most and process.renders >= most):
            self._replace(process)
        else:
            self._idle.put_nowait(process)
        if status == render_process.RENDERED:
            return answer[1]
        if status == render_process.FAILED:
            raise TemplateError(answer[1], answer[2])
        cause = f"the template needed more than {self.limits.memory_mib} MiB and was stopped"
        expression = answer[1] if answer[1] is not None else describe(source)
        raise RenderStopped(expression, cause, "memory")

    async def _take(self) -> _Process:
        """An idle process, started first if its slot has none."""
        process = await self._idle.get()
        if self._closed:
            self._idle.put_nowait(process)  # wakes the next waiter, which fails as well
            raise RenderPoolError("the render pool was shut down")
        if process is not None and process.alive():
            return process
        # Not started yet, its start failed, or it died while idle: start one for us.
        loop = asyncio.get_running_loop()
        try:
            started = loop.run_in_executor(self._spawner, self._restart, process)
        except RuntimeError as e:  # the spawner was shut down: the pool is closing
            self._idle.put_nowait(None)
            raise RenderPoolError("the render pool was shut down") from e
        try:
            return await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(self._adopt)
            raise
        except Exception as e:
            self._idle.put_nowait(None)
            raise RenderPoolError(f"no render process could be started: {e!r}") from e

    def _replace(self, process: _Process) -> asyncio.Future[_Process]:
        """Stop ``process`` and start another in its place, off the event loop; the new one
        joins the idle ones when it is up."""
        loop = asyncio.get_running_loop()
        try:
            replaced = loop.run_in_executor(self._spawner, self._restart, process)
        except RuntimeError:  # the spawner was shut down: the pool is closing
            self._idle.put_nowait(None)
            replaced = loop.create_future()
            replaced.cancel()
            return replaced
        replaced.add_done_callback(self._adopt)
        return replaced

    def _adopt(self, started: asyncio.Future[_Process]) -> None:
        process = None
        if not started.cancelled() and started.exception() is None:
            process = started.result()
            if self._closed:
                self._stop(process)
                process = None
        elif not started.cancelled() and not self._closed:
            log.warning("a render process could not be started: %r", started.exception())
        self._idle.put_nowait(process)

    def _restart(self, process: _Process | None) -> _Process:
        if process is not None:
            self._stop(process)
        if self._closed:
            raise RenderPoolError("the render pool was shut down")
        return self._new_process()

    def _new_process(self) -> _Process:
        process = _Process(self._context, self.limits.memory_mib * MIB, self._cpu_backstop_s())
        with self._lock:
            self._processes.add(process)
        return process

    def _stop(self, process: _Process, *, close_pipe: bool = True) -> None:
        with contextlib.suppress(ValueError, OSError):  # stopped twice (by close as well)
            process.stop(close_pipe=close_pipe)
        with self._lock:
            self._processes.discard(process)

    def _cpu_backstop_s(self) -> int:
        # CPU time cannot pass wall-clock time in a one-threaded process: with this margin
        # the pool's own limit always comes first while the pool is there.
        return math.ceil(self.limits.timeout_s) * 2 + 1

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("a RenderPool serves one event loop: make one for each loop")


# --- the process-wide pool --------------------------------------------------------------

_default: RenderPool | None = None
_default_lock = threading.Lock()


def default_pool() -> RenderPool:
    """This process's pool: the one ``start`` made, else one with the environment's limits
    (also in place of one whose event loop was closed, as between test sessions)."""
    global _default  # noqa: PLW0603 - one pool per process, shared by every caller
    with _default_lock:
        if _default is not None and _default.serves_a_closed_loop():
            threading.Thread(target=_default.close, daemon=True).start()
            _default = None
        if _default is None:
            _default = RenderPool()
        return _default


def start(limits: RenderLimits | None = None) -> RenderPool:
    """Make this process's pool (with ``limits``, else the environment's) and start its
    processes. Once per process, before the first render or after ``shutdown``."""
    global _default  # noqa: PLW0603
    with _default_lock:
        if _default is not None:
            raise RuntimeError("the render pool was started already")
        _default = pool = RenderPool(limits)
    pool.start()
    return pool


async def shutdown() -> None:
    """Stop this process's pool, if it has one; a later render starts a new one."""
    global _default
    with _default_lock:
        pool, _default = _default, None
    if pool is not None:
        await pool.aclose()


async def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """``RenderPool.render_value`` on this process's pool."""
    return await default_pool().render_value(value, context)


async def render_string(source: str, context: Mapping[str, Any]) -> str:
    """``RenderPool.render_string`` on this process's pool."""
    return await default_pool().render_string(source, context)


async def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """``RenderPool.evaluate`` on this process's pool."""
    return await default_pool().evaluate(expr, context)
