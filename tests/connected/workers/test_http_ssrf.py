"""The http node's SSRF defence end to end: a coordinator of its own sends the tasks, the
worker's real code path (``serve`` + ``TaskExecutor`` + the http handler) runs them.

Every hostile URL must fail its node with a refusal and its run must fail, while a canary
server on loopback counts the requests that got through: none may. Names are resolved by an
in-memory map to loopback only, so no hostile name ever reaches real DNS, and no traffic
leaves loopback. An allowlisted target still works, redirects included.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cas.store import ContentStore
from infra.bus import EventBus
from run_model.testing import build_ir, run_submitted
from schemas.events import NodeFailed, NodeSucceeded, RunCompleted, RunFailed
from schemas.ir import WorkflowIR
from tests.connected.isolated import Isolated, isolated, producer
from tests.connected.processors.harness import RunLog, append
from tests.helpers import eventually
from tests.http_support import LoopbackServer, MapResolver, ipv6_loopback_available
from workers.execute import TaskExecutor
from workers.http import Guard, HttpHandler, build_client, parse_allowlist
from workers.runtime import serve

__all__ = ["isolated", "producer"]  # fixtures used by this module

pytestmark = pytest.mark.connected

LOOPBACK_NAMES = {
    "good.test": ["127.0.0.1"],
    "rebind.test": ["127.0.0.1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "localtest.me": ["127.0.0.1"],
    "v6.test": ["::1"],
    "both.test": ["127.0.0.1", "::1"],
    "localhost": ["127.0.0.1", "::1"],
    "sub.localhost": ["127.0.0.1"],
    "metadata.google.internal": ["127.0.0.1"],
    "metadata": ["127.0.0.1"],
    "metadata.goog": ["127.0.0.1"],
    "instance-data": ["127.0.0.1"],
}


def hostile_urls(c: int, c6: int, r: int, g: int) -> list[str]:
    """``c``: the canary's port (``c6`` on [::1]); ``r``: the allowlisted redirector's on
    127.0.0.1; ``g``: the allowlisted good target's (good.test)."""
    direct = [
        # IPv4 loopback spelled as the C library reads it
        f"http://127.0.0.1:{c}/",
        f"http://127.1:{c}/",
        f"http://127.0.1:{c}/",
        f"http://2130706433:{c}/",
        f"http://0x7f000001:{c}/",
        f"http://017700000001:{c}/",
        f"http://0x7f.0.0.1:{c}/",
        f"http://0177.0.0.1:{c}/",
        f"http://127.000.000.001:{c}/",
        f"http://127.0.0.1.:{c}/",
        f"https://127.0.0.1:{c}/",
        # IPv6 loopback and IPv4 loopback carried in IPv6
        f"http://[::1]:{c6}/",
        f"http://[0:0:0:0:0:0:0:1]:{c6}/",
        f"https://[::1]:{c6}/",
        f"http://[::ffff:127.0.0.1]:{c}/",
        f"http://[::ffff:7f00:1]:{c}/",
        f"http://[::127.0.0.1]:{c}/",
        f"http://[2002:7f00:1::]:{c}/",
        f"http://[64:ff9b::7f00:1]:{c}/",
        f"http://[64:ff9b::127.0.0.1]:{c}/",
        f"http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{c}/",  # Teredo, client 127.0.0.1
        # unspecified addresses (Linux connects them to the local host)
        f"http://0.0.0.0:{c}/",
        f"http://0:{c}/",
        f"http://[::]:{c6}/",
        # names of this machine, and names resolving to loopback
        f"http://localhost:{c}/",
        f"http://LOCALHOST:{c}/",
        f"http://localhost.:{c}/",
        f"http://sub.localhost:{c}/",
        f"http://127.0.0.1.nip.io:{c}/",
        f"http://localtest.me:{c}/",
        f"http://rebind.test:{c}/",
        f"http://v6.test:{c6}/",
        f"http://both.test:{c}/",
        f"http://good.test:{c}/",  # allowlisted name, but not on this port
        # metadata names (refused by name, and they resolve to loopback here)
        f"http://metadata.google.internal:{c}/computeMetadata/v1/",
        f"http://METADATA.GOOGLE.INTERNAL.:{c}/",
        f"http://metadata:{c}/",
        f"http://metadata.goog:{c}/",
        f"http://instance-data:{c}/latest/meta-data/",
        # other schemes and credentials
        "file:///etc/passwd",
        f"ftp://127.0.0.1:{c}/",
        f"gopher://127.0.0.1:{c}/_GET%20/",
        f"dict://127.0.0.1:{c}/info",
        f"ws://127.0.0.1:{c}/",
        "data:text/plain,hello",
        f"http://user:pass@good.test:{g}/json",
        f"http://user@127.0.0.1:{r}/json",
    ]
    into = [
        f"http://127.0.0.1:{c}/",
        f"http://[::1]:{c6}/",
        f"http://2130706433:{c}/",
        f"http://0x7f.1:{c}/",
        f"http://[::ffff:127.0.0.1]:{c}/",
        f"http://[2002:7f00:1::]:{c}/",
        f"http://localhost:{c}/",
        f"http://rebind.test:{c}/",
        f"http://metadata.google.internal:{c}/",
        f"http://user:pass@good.test:{g}/json",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{c}/_x",
    ]
    redirects = [f"http://127.0.0.1:{r}/to?url={u}" for u in into]
    # Six redirects on the allowlisted redirector, ending at the good target: the 6th is
    # refused by count; and a chain whose last hop leads into loopback.
    redirects.append(f"http://127.0.0.1:{r}/chain/5?final=http://good.test:{g}/json")
    redirects.append(f"http://127.0.0.1:{r}/chain/3?final=http://127.0.0.1:{c}/")
    return direct + redirects


def http_workflow() -> WorkflowIR:
    ir = build_ir({"fetch": "http"}, [], max_attempts=1, timeout_s=30)
    node = ir.nodes["fetch"].model_copy(
        update={"config": {"method": "GET", "url": "{{ input.url }}", "timeout_s": 10}}
    )
    return ir.model_copy(update={"nodes": {"fetch": node}})


@contextlib.asynccontextmanager
async def http_worker(iso: Isolated, resolver: MapResolver, allowlist: str) -> Any:
    """The worker's real path in this process, serving the isolated coordinator's topics."""
    settings = iso.settings
    bus = EventBus(settings.kafka_bootstrap, client_id="aob-test-http-worker")
    await bus.start()
    store = ContentStore.from_settings(settings)
    await asyncio.to_thread(store.ensure_bucket)
    stop = asyncio.Event()
    async with build_client(Guard(resolver, parse_allowlist(allowlist))) as client:
        handler = HttpHandler(client, max_response_bytes=1_000_000, default_timeout_s=10)
        executor = TaskExecutor(
            events=bus,
            store=store,
            handlers={"http": handler},
            worker_name="test-http-worker",
            runs_topic=iso.config.runs_topic,
        )
        worker = asyncio.create_task(
            serve(
                ["http"],
                bootstrap=settings.kafka_bootstrap,
                executor=executor,
                dead_letters=bus,
                stop=stop,
                topic_prefix=iso.config.task_topic_prefix,
                group_prefix=f"test-{uuid.uuid4().hex[:8]}-workers-",
            )
        )
        try:
            yield
        finally:
            stop.set()
            await worker
            await bus.stop()


def _outcome(log: RunLog, run_id: str) -> tuple[Any, Any]:
    """(the node's last NodeFailed or NodeSucceeded, the run's end); raises until both."""
    events = log.events(run_id)
    node = [e for e in events if isinstance(e, NodeFailed | NodeSucceeded)]
    end = [e for e in events if isinstance(e, RunFailed | RunCompleted)]
    assert node and end, f"run {run_id} has not finished: {[e.type for e in events]}"
    return node[-1], end[-1]


async def test_hostile_urls_fail_their_node_and_the_canary_sees_nothing(
    isolated: Isolated, producer: AIOKafkaProducer
) -> None:
    servers = contextlib.ExitStack()
    with servers:
        canary = servers.enter_context(LoopbackServer("127.0.0.1").running())
        canary6 = (
            servers.enter_context(LoopbackServer("::1").running())
            if ipv6_loopback_available()
            else canary
        )
        redirector = servers.enter_context(LoopbackServer("127.0.0.1").running())
        good = servers.enter_context(LoopbackServer("127.0.0.1").running())
        hostile = hostile_urls(canary.port, canary6.port, redirector.port, good.port)
        assert len(hostile) >= 40
        friendly = [
            f"http://good.test:{good.port}/json",
            f"http://127.0.0.1:{redirector.port}/chain/4?final=http://good.test:{good.port}/echo",
        ]
        allowlist = f"127.0.0.1:{redirector.port},good.test:{good.port}"
        ir = http_workflow()
        tag = uuid.uuid4().hex[:8]
        runs = {f"ssrf-{tag}-{i}": url for i, url in enumerate(hostile + friendly)}

        worker = http_worker(isolated, MapResolver(LOOPBACK_NAMES), allowlist)
        async with worker, RunLog(isolated) as log:
            await asyncio.gather(
                *(
                    append(isolated, producer, run_submitted(run_id, ir, {"url": url}))
                    for run_id, url in runs.items()
                )
            )

            def all_finished() -> dict[str, tuple[Any, Any]]:
                return {run_id: _outcome(log, run_id) for run_id in runs}

            outcomes = await eventually(all_finished, timeout=120)

        problems = []
        for run_id, url in runs.items():
            node, end = outcomes[run_id]
            if url in friendly:
                if not (isinstance(node, NodeSucceeded) and isinstance(end, RunCompleted)):
                    problems.append(f"{url}: expected success, got {node.type}: {node.payload}")
                continue
            if not isinstance(node, NodeFailed) or "refused" not in node.payload.error:
                problems.append(f"{url}: not refused: {node.type} {node.payload}")
            elif node.payload.retryable:
                problems.append(f"{url}: refusal marked retryable")
            if not isinstance(end, RunFailed):
                problems.append(f"{url}: run ended with {end.type}")
        assert not problems, "\n".join(problems) + "\n" + isolated.log_text()[-3000:]

        assert canary.seen == [], [(s.method, s.path, s.headers) for s in canary.seen]
        assert canary6.seen == []
        # The allowlisted target was reached, by name, with the attempt's idempotency key.
        hits = [s for s in good.seen if s.path in ("/json", "/echo")]
        assert len(hits) == 2, [s.path for s in good.seen]
        assert {s.headers["Host"] for s in hits} == {f"good.test:{good.port}"}
        run_of = {url: run_id for run_id, url in runs.items()}
        keys = {s.headers["Idempotency-Key"] for s in hits}
        assert keys == {f"{run_of[url]}/fetch/1" for url in friendly}
        echoed = outcomes[run_of[friendly[1]]][0].payload.output
        assert echoed["status"] == 200
        assert echoed["body"]["headers"]["host"] == f"good.test:{good.port}"
