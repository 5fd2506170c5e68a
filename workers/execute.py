"""One task, start to finish: resolve the context, report the start, run the handler, store
the output if it is too large to travel in its event, report the outcome.

A small output (up to ``INLINE_OUTPUT_MAX_BYTES`` of canonical JSON) goes only in the
NodeSucceeded event: a CAS write for every output, even ``{}``, took most of the workers'
time under load (one MinIO round trip per node), and the event is durable in the log anyway.

Business failures become NodeFailed events. Infrastructure faults (Kafka, the CAS) are
retried here with backoff until they pass or the worker stops; the caller commits the offset
only after ``run`` returns, so a task whose outcome was never acknowledged is redelivered.

A coordinator that crashed between sending a task and recording it sends the same task
again (same task id). The executor remembers the ids of the tasks it finished lately, whose
outcome is acknowledged in the log, and does not run such a copy a second time; a copy that
arrives while the first is still running waits for it. This spares the side effect within
one worker's lifetime; across restarts the idempotency key (run/node/attempt) that every
attempt carries is what the called system can rely on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaError

from cas.store import BlobCorrupted, BlobNotFound, CasError
from schemas import reports
from schemas.canonical import canonical_json
from schemas.envelope import Event
from schemas.position import Position
from schemas.tasks import NodeTask
from schemas.topics import RUN_EVENTS
from schemas.workflow import DEFAULT_TIMEOUT_S
from workers.errors import InfrastructureFault
from workers.handlers.base import WAITING, Handler, Job
from workers.outcome import classify

log = logging.getLogger(__name__)

T = TypeVar("T")


class EventSink(Protocol):
    async def append(self, topic: str, event: Event) -> Position: ...


class BlobStore(Protocol):
    async def put_bytes(self, data: bytes, content_type: str = ...) -> str: ...
    async def get_json(self, ref: str) -> Any: ...


TRANSIENT = (KafkaError, CasError, OSError, InfrastructureFault)


class TaskExecutor:
    def __init__(
        self,
        *,
        events: EventSink,
        store: BlobStore,
        handlers: Mapping[str, Handler],
        worker_name: str,
        runs_topic: str = RUN_EVENTS,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        max_backoff_s: float = 5.0,
        remember_tasks: int = 50_000,
    ) -> None:
        self._events = events
        self._store = store
        self._handlers = handlers
        self._worker = worker_name
        self._runs_topic = runs_topic
        self._default_timeout = default_timeout_s
        self._max_backoff = max_backoff_s
        self._remember = remember_tasks
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Future[bool]] = {}
        self.duplicates_skipped = 0

    async def run(self, task: NodeTask) -> None:
        """Execute ``task`` once; a copy of a task finished or running here is not run again."""
        if task.task_id in self._finished:
            self.duplicates_skipped += 1
            log.info("task %s was done already: its copy is not run again", task.task_id)
            return
        first = self._running.get(task.task_id)
        if first is not None and await asyncio.shield(first):
            self.duplicates_skipped += 1
            return
        # Not seen, or the first copy did not finish (then this one does the work).
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._running[task.task_id] = done
        finished = False
        try:
            await self._execute(task)
            finished = True
        finally:
            if self._running.get(task.task_id) is done:
                del self._running[task.task_id]
            done.set_result(finished)
        self._finished[task.task_id] = None
        if len(self._finished) > self._remember:
            self._finished.popitem(last=False)

    async def _execute(self, task: NodeTask) -> None:
        handler = self._handlers.get(task.node_type)
        if handler is None:
            await self._report(
                reports.failed(
                    task, reports.node_reason(task, "no handler in this worker"), retryable=False
                )
            )
            return
        try:
            context = await self._context(task)
        except (BlobNotFound, BlobCorrupted) as e:
            reason = reports.node_reason(task, f"could not read an upstream output: {e}")
            await self._report(reports.failed(task, reason, retryable=True))
            return

        await self._report(reports.started(task, self._worker))
        timeout = task.timeout_s or self._default_timeout
        try:
            output = await asyncio.wait_for(handler(Job(task, context, self._report)), timeout)
            if output is WAITING:
                return  # the node waits outside the worker; its handler reported why
            data = canonical_json(output)
        except (TypeError, ValueError) as e:  # from canonical_json: the handler's output
            reason = reports.node_reason(task, f"output is not a JSON value: {e}")
            await self._report(reports.failed(task, reason, retryable=False))
            return
        except Exception as e:  # noqa: BLE001 - every handler failure is reported, see outcome
            what, retryable = classify(e, timeout)
            log.info("task %s failed: %s", task.task_id, what)
            await self._report(
                reports.failed(task, reports.node_reason(task, what), retryable=retryable)
            )
            return
        ref = None
        if not reports.inline(len(data)):  # small outputs travel in the event, not the CAS
            ref = await self._retrying(
                lambda: self._store.put_bytes(data, "application/json"), "store output"
            )
        await self._report(reports.succeeded(task, output, ref, len(data)))

    async def _context(self, task: NodeTask) -> dict[str, Any]:
        """``{input, nodes}`` with every upstream output resolved from the CAS if not inline.

        A missing or corrupt blob will not heal by waiting: that fails the node (retryable, a
        later attempt may find it restored); an unreachable CAS is retried here.
        """
        nodes: dict[str, Any] = {}
        for node_id, ctx in task.nodes.items():
            output = ctx.output
            if ctx.output is None and ctx.output_ref:
                ref = ctx.output_ref
                output = await self._retrying(
                    lambda ref=ref: self._store.get_json(ref),  # type: ignore[misc]
                    f"read {ref}",
                    permanent=(BlobNotFound, BlobCorrupted),
                )
            nodes[node_id] = {"output": output, "status": ctx.status}
        return {"input": task.input, "nodes": nodes}

    async def _report(self, event: Event) -> Position:
        return await self._retrying(
            lambda: self._events.append(self._runs_topic, event), f"append {event.type}"
        )

    async def _retrying(
        self,
        fn: Callable[[], Awaitable[T]],
        what: str,
        attempts: int | None = None,
        permanent: tuple[type[BaseException], ...] = (),
    ) -> T:
        """``fn()`` until it passes; transient faults are retried with capped backoff
        (forever unless ``attempts`` is set, then the last error is raised)."""
        delay = 0.1
        tried = 0
        while True:
            tried += 1
            try:
                return await fn()
            except permanent:
                raise
            except TRANSIENT as e:
                if attempts is not None and tried >= attempts:
                    raise
                log.warning("%s failed (attempt %d), retrying in %.1fs: %s", what, tried, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
