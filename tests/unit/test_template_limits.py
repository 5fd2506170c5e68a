"""Templates under the render pool's limits (templating.renders): every way the sandbox lets
a template burn CPU or memory is stopped with a TemplateError naming the limit, and the pool
is whole again afterwards; nothing keeps running, no thread is held.

The pools here have low limits (0.5 s, 128 MiB) so that the tests are quick. Waits are
liveness guards (``eventually``, generous timeouts); what is asserted is outcomes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from schemas.tasks import NodeTask
from templating import RenderPoolError, RenderStopped, TemplateError, renders
from templating.limits import RenderLimits
from templating.renders import RenderPool
from tests.helpers import eventually
from workers.handlers import HANDLERS, Job
from workers.outcome import classify

CTX: dict[str, Any] = {"input": {"n": 2, "items": [1, 2, 3, 4]}, "nodes": {}}
TIME_S = 0.5
MEMORY_MIB = 128
LIMITS = RenderLimits(timeout_s=TIME_S, memory_mib=MEMORY_MIB, processes=2)

# A loop that would run for days: only the time limit ends it.
BUSY = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"

# Each builds far more than 128 MiB (most of them 1 GB or more) in a few operations.
MEMORY_BOMBS = {
    "concatenation ~ doubling": (
        "{% macro g(s, n) %}{{ g(s ~ s, n - 1) if n else s | length }}{% endmacro %}"
        "{{ g('x', 40) }}"
    ),
    "string + doubling": (
        "{% macro g(s, n) %}{{ g(s + s, n - 1) if n else s | length }}{% endmacro %}"
        "{{ g('x', 40) }}"
    ),
    "list + doubling": (
        "{% macro g(l, n) %}{{ g(l + l, n - 1) if n else l | length }}{% endmacro %}"
        "{{ g([1], 40) }}"
    ),
    "join with a big separator": "{{ range(10000) | join('x' * 1000000) }}",
    "replace filter growth": "{{ ('x' * 1000000) | replace('x', 'x' * 1000) }}",
    "replace method growth": "{{ ('x' * 1000000).replace('x', 'x' * 1000) }}",
    "center width": "{{ 'x' | center(999999999) }}",
    "format filter width": "{{ '%999999999d' | format(1) }}",
    "% operator width": "{{ '%999999999d' % 1 }}",
    "str.format width": "{{ '{:>999999999}'.format(1) }}",
    "* on a list, then join": "{{ (['x' * 1000000] * 1000000) | join }}",
    "| list of a large mapped range": "{{ range(10000) | map('center', 100000) | list | length }}",
    "| unique of a large mapped range": (
        "{{ range(10000) | map('center', 100000) | unique | list | length }}"
    ),
    "dict.fromkeys growth": "{{ dict.fromkeys(range(10000) | map('center', 100000)) | length }}",
    "dict growth": (
        "{% macro g(d, n) %}"
        "{{ g(dict(d, **{n | string: 'x' * 1000000 ~ n}), n - 1) if n else d | length }}"
        "{% endmacro %}{{ g({}, 900) }}"
    ),
    "str.ljust": "{{ 'x'.ljust(999999999) }}",
    "str.rjust": "{{ 'x'.rjust(999999999) }}",
    "str.zfill": "{{ '1'.zfill(999999999) }}",
}

# Each runs for minutes or more, in small steps that never need much memory.
TIME_BOMBS = {
    "nested for loops over range(10000)": BUSY,
    "~ in nested loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}"
        "{{ '' if ('x' * 1000) ~ i ~ j else '' }}{% endfor %}{% endfor %}"
    ),
    "recursive macro, two calls deep": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "| sum in a loop": "{% for i in range(10000) %}{{ range(10000) | sum }}{% endfor %}",
    "| sort in a loop": (
        "{% for i in range(10000) %}{{ ((range(10000) | list) * 100) | sort | first }}{% endfor %}"
    ),
    "busy loop in a filter chain": (
        "{% for i in range(10000) %}"
        "{{ range(10000) | select('odd') | map('string') | join | length }}{% endfor %}"
    ),
    "lipsum": "{{ lipsum(10000000) | length }}",
    # One of these takes 0.4 s and 1.1 s on an idle machine: repeated, minutes.
    "wordwrap of many words": (
        "{% for i in range(1000) %}{{ ('x ' * 500000) | wordwrap(1) | length }}{% endfor %}"
    ),
    "urlize of many words": (
        "{% for i in range(1000) %}{{ ('x ' * 500000) | urlize | length }}{% endfor %}"
    ),
}


@pytest.fixture(scope="module")
def pool() -> Iterator[RenderPool]:
    pool = RenderPool(LIMITS)
    pool.start()
    yield pool
    pool.close()


def _has_size(pool: RenderPool, without: frozenset[int] = frozenset()) -> frozenset[int]:
    pids = pool.pids
    assert len(pids) == pool.limits.processes, pids
    assert not pids & without, f"{pids & without} still in the pool"
    return pids


def _replaced_one(pool: RenderPool, before: frozenset[int]) -> frozenset[int]:
    """The one process of ``before`` that is no longer in the pool (others came instead)."""
    pids = _has_size(pool)
    assert len(before - pids) == 1, f"before {before}, now {pids}"
    return before - pids


def _gone(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            about = [line.strip() for line in status if line.startswith(("State", "PPid"))]
    except (FileNotFoundError, ProcessLookupError):  # gone in between (ESRCH mid-read)
        return
    raise AssertionError(f"process {pid} still exists: {about}")


def _cpu_s(pid: int) -> float:
    """CPU time ``pid`` has used (user and system), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _healthy(pool: RenderPool, without: frozenset[int] = frozenset()) -> frozenset[int]:
    """The pool is back to its size (``without`` those processes) and renders; its
    processes."""
    pids = await eventually(lambda: _has_size(pool, without), timeout=30, interval=0.02)
    assert await pool.render_value("{{ input.n + 1 }}", CTX) == 3
    return pids


async def _busy_pid(pool: RenderPool) -> int:
    """The one process that is rendering: it has burnt a good deal of CPU since now (a
    process that is merely starting or idle burns almost none)."""
    spent = {pid: _cpu_s(pid) for pid in pool.pids}

    def busy() -> int:
        running = [pid for pid, before in spent.items() if _cpu_s(pid) - before >= 0.3]
        assert len(running) == 1, f"busy processes: {running}"
        return running[0]

    return await eventually(busy, timeout=30, interval=0.05)


# --- every way to burn memory or CPU ----------------------------------------------------


@pytest.mark.parametrize("template", MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
async def test_memory_bombs_stop_at_the_memory_limit(pool: RenderPool, template: str) -> None:
    await _healthy(pool)
    with pytest.raises(RenderStopped) as info:
        await pool.render_value({"output": template}, CTX)
    assert info.value.limit == "memory"
    assert info.value.cause == f"the template needed more than {MEMORY_MIB} MiB and was stopped"
    await _healthy(pool)


@pytest.mark.parametrize("template", TIME_BOMBS.values(), ids=TIME_BOMBS.keys())
async def test_time_bombs_stop_at_the_time_limit(pool: RenderPool, template: str) -> None:
    before = await _healthy(pool)
    with pytest.raises(RenderStopped) as info:
        await pool.render_value({"output": template}, CTX)
    assert info.value.limit == "time"
    assert info.value.cause == f"the template ran longer than {TIME_S:g} s and was stopped"
    assert template in info.value.expression
    # The process that ran it was killed and replaced; the other one is untouched.
    (killed,) = await eventually(lambda: _replaced_one(pool, before), timeout=30, interval=0.02)
    _gone(killed)
    await _healthy(pool, without=frozenset({killed}))


async def test_prompts_and_conditions_have_the_same_limits(pool: RenderPool) -> None:
    with pytest.raises(RenderStopped) as info:
        await pool.render_string(f"Dear model, {BUSY}", CTX)
    assert info.value.limit == "time"
    with pytest.raises(RenderStopped) as info:
        await pool.evaluate("lipsum(10000000) | length > 0", CTX)
    assert info.value.limit == "time"
    with pytest.raises(RenderStopped) as info:
        await pool.evaluate("'x'.ljust(999999999) | length > 0", CTX)
    assert info.value.limit == "memory"
    await _healthy(pool)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ 'a' * 10**9 }}", "is too large"),
        ("{{ [1] * 10**9 }}", "is too large"),
        ("{{ 2 ** 100000000 }}", "is too large"),
        ("{{ range(10**7) | list }}", "is larger than 10000"),
        ("{{ 'x' * 600000 }}{{ 'x' * 600000 }}", "exceeds"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recursion"),
    ],
)
async def test_the_cheap_checks_answer_first(pool: RenderPool, template: str, words: str) -> None:
    with pytest.raises(TemplateError) as info:
        await pool.render_value(template, CTX)
    assert not isinstance(info.value, RenderStopped)
    assert words in info.value.cause
    assert info.value.expression == template


async def test_normal_renders_fit_the_memory_limit(pool: RenderPool) -> None:
    body = "y" * (10 * 1024 * 1024)  # a 10 MiB upstream output in the context
    context = {"input": {}, "nodes": {"up": {"output": {"body": body}, "status": "SUCCEEDED"}}}
    config = {
        "size": "{{ nodes.up.output.body | length }}",
        "head": "{{ nodes.up.output.body[:3] }}",
        "copy": "{{ nodes.up.output.body | replace('y', 'z') | length }}",
    }
    assert await pool.render_value(config, context) == {
        "size": len(body),
        "head": "yyy",
        "copy": len(body),
    }


# --- nothing keeps running ---------------------------------------------------------------


async def test_a_render_given_up_by_its_caller_is_killed() -> None:
    # The node's own timeout cancels the handler: its render must not run on.
    pool = RenderPool(RenderLimits(timeout_s=60, processes=1))
    try:
        pool.start()
        (pid,) = pool.pids
        render = asyncio.create_task(pool.render_value(BUSY, CTX))
        assert await _busy_pid(pool) == pid
        render.cancel()
        with pytest.raises(asyncio.CancelledError):
            await render
        await eventually(lambda: _gone(pid), timeout=30, interval=0.02)
        await _healthy(pool, without=frozenset({pid}))
    finally:
        await pool.aclose()


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL], ids=["SIGSEGV", "SIGKILL"])
async def test_a_crashed_process_fails_its_render_only(sig: signal.Signals) -> None:
    pool = RenderPool(RenderLimits(timeout_s=60, processes=2))
    try:
        pool.start()
        doomed = asyncio.create_task(pool.render_value(BUSY, CTX))
        pid = await _busy_pid(pool)
        # The other process serves on.
        assert await pool.render_value("{{ input.n * 21 }}", CTX) == 42
        os.kill(pid, sig)
        with pytest.raises(RenderStopped) as info:
            await doomed
        assert info.value.limit == "process"
        assert sig.name in info.value.cause and "was replaced" in info.value.cause
        await _healthy(pool, without=frozenset({pid}))
        _gone(pid)
    finally:
        await pool.aclose()


def test_a_render_left_alone_stops_at_its_cpu_limit() -> None:
    # Should the worker be killed outright, no pool stops a busy render: its CPU limit does.
    code = (
        "from templating import render_process as p\n"
        "p.confine(128 * 1024 * 1024, 1)\n"
        f"p.run('value', {BUSY!r}, {{}})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=120, check=False)
    assert done.returncode == -signal.SIGXCPU


def test_timed_out_renders_hold_no_thread() -> None:
    """Six renders that time out do not starve the default executor (six threads, as on two
    cores), which the CAS and DNS calls share: calls made meanwhile are served."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=6))
        await renders.shutdown()  # the session's pool serves the session's loop
        renders.start(LIMITS)
        try:
            jobs = [_job("transform", {"output": {"x": BUSY}}) for _ in range(6)]
            stuck = [asyncio.create_task(HANDLERS["transform"](job)) for job in jobs]
            calls = [asyncio.to_thread(pow, 2, n) for n in range(12)]
            # Rendered in threads, the six would hold every thread for half a minute.
            assert await asyncio.wait_for(asyncio.gather(*calls), 10) == [2**n for n in range(12)]
            outcomes = await asyncio.wait_for(asyncio.gather(*stuck, return_exceptions=True), 60)
            assert [getattr(e, "limit", e) for e in outcomes] == ["time"] * 6
            await _healthy(renders.default_pool())
        finally:
            await renders.shutdown()

    asyncio.run(scenario())


# --- the pool itself ---------------------------------------------------------------------


async def test_renders_from_many_tasks_at_once(pool: RenderPool) -> None:
    contexts = [{"input": {"n": n}, "nodes": {}} for n in range(300)]
    results = await asyncio.gather(
        *(
            pool.render_value({"double": "{{ input.n * 2 }}", "n": n}, c)
            for n, c in enumerate(contexts)
        )
    )
    assert results == [{"double": 2 * n, "n": n} for n in range(300)]


async def test_conditions_get_json_values(pool: RenderPool) -> None:
    assert await pool.evaluate("input.items | select('odd')", CTX) == [1, 3]
    assert await pool.evaluate("input.items | select('gt', 9)", CTX) == []
    assert await pool.evaluate("input.n > 1", CTX) is True
    with pytest.raises(TemplateError, match="not a JSON value"):
        await pool.evaluate("cycler(1, 2)", CTX)


async def test_a_process_is_replaced_after_so_many_renders() -> None:
    pool = RenderPool(RenderLimits(processes=1, renders_per_process=3))
    try:
        pool.start()
        (first,) = pool.pids
        for n in range(3):
            assert await pool.render_value("{{ input.n }}", {"input": {"n": n}}) == n
        await eventually(lambda: _gone(first), timeout=30, interval=0.02)
        await _healthy(pool, without=frozenset({first}))
    finally:
        await pool.aclose()


async def test_values_without_templates_never_reach_the_pool() -> None:
    pool = RenderPool(RenderLimits(processes=1))
    await pool.aclose()
    plain = {"a": ["x", 1, None, {"b": "no braces here"}], "c": True}
    assert await pool.render_value(plain, CTX) == plain
    assert await pool.render_string("plain\r\ntext", CTX) == "plain\r\ntext"
    with pytest.raises(RenderPoolError, match="shut down"):
        await pool.render_value({"a": "{{ input.n }}"}, CTX)
    assert not pool.pids


async def test_a_pool_shut_down_fails_its_renders() -> None:
    pool = RenderPool(RenderLimits(timeout_s=60, processes=1))
    pool.start()
    running = asyncio.create_task(pool.render_value(BUSY, CTX))
    await _busy_pid(pool)
    waiting = asyncio.create_task(pool.render_value("{{ input.n }}", CTX))
    pids = pool.pids
    await pool.aclose()
    for render in (running, waiting):
        with pytest.raises(RenderPoolError, match="shut down"):
            await asyncio.wait_for(render, 30)
    assert not pool.pids
    for pid in pids:
        _gone(pid)


def test_the_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RenderLimits().model_dump() == {
        "timeout_s": 2.0,
        "memory_mib": 256,
        "processes": 2,
        "renders_per_process": 1000,
    }
    monkeypatch.setenv("AOB_TEMPLATE_TIMEOUT_S", "0.7")
    monkeypatch.setenv("AOB_TEMPLATE_MEMORY_MIB", "64")
    monkeypatch.setenv("AOB_TEMPLATE_PROCESSES", "3")
    monkeypatch.setenv("AOB_TEMPLATE_RENDERS_PER_PROCESS", "0")
    assert RenderLimits().model_dump() == {
        "timeout_s": 0.7,
        "memory_mib": 64,
        "processes": 3,
        "renders_per_process": 0,
    }


# --- what the worker makes of it ---------------------------------------------------------


def test_a_stopped_render_fails_the_node_for_good() -> None:
    stopped = RenderStopped("{{ x }}", "the template ran longer than 2 s and was stopped", "time")
    assert classify(stopped, 30) == (f"template error: {stopped}", False)
    assert classify(RenderPoolError("the render pool was shut down"), 30)[1] is True


def _job(node_type: str, config: dict[str, Any]) -> Job:
    task = NodeTask(
        task_id="t-1",
        run_id="run-1",
        tenant="acme",
        node_id="shape",
        node_type=node_type,
        attempt=1,
        config=config,
        input=CTX["input"],
    )
    return Job(task, {"input": CTX["input"], "nodes": {}})
