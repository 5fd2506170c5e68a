"""One task, start to finish: resolve the context, report the start, run the handler, check
and store the output if it is too large to travel in its event, report the outcome.

A small output (up to ``INLINE_OUTPUT_MAX_BYTES`` of canonical JSON) goes only in the
NodeSucceeded event: a CAS write for every output, even ``{}``, took most of the workers'
time under load (one MinIO round trip per node), and the event is durable in the log anyway.

Every task ends in an outcome, whatever happens to it; infrastructure faults are the one
exception:

- Business failures (the handler's exceptions, ``workers.outcome``) become NodeFailed
  events, and so does an output that breaks the value rules or the size limit
  (``workers.outputs``: not retryable, the reason names the path of the bad part).
- Infrastructure faults (Kafka, the CAS) are retried here with backoff until they pass or
  the worker stops; the caller commits the offset only after ``run`` returns, so a task
  whose outcome was never acknowledged is redelivered. An event too large for Kafka is not
  such a fault: it fails the same way on every try, so it fails the node instead.
- Anything else raised around a task is a bug in the worker. Its node is reported failed,
  retryable, with the exception as the reason, and ``run`` raises ``TaskCrashed`` so that
  the runtime parks the record for an operator (``workers.runtime``). Retryable because the
  worker cannot tell a bug that fails this input every time from a fault that passes, and a
  fixed release may be running by the next attempt; the node's retry policy (one attempt
  unless the author asked for more) bounds the cost. Left unreported, as it was, the node
  waited for its deadline and the run learnt nothing but "timed out".

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

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from cas.store import BlobCorrupted, BlobNotFound, CasError
from schemas import reports
from schemas.envelope import Event
from schemas.position import Position
from schemas.tasks import NodeTask
from schemas.topics import RUN_EVENTS
from schemas.workflow import DEFAULT_TIMEOUT_S
from workers.errors import InfrastructureFault, TaskCrashed
from workers.handlers.base import WAITING, Handler, Job
from workers.outcome import classify
from workers.outputs import DEFAULT_MAX_OUTPUT_BYTES, encoded_output

log = logging.getLogger(__name__)

T = TypeVar("T")


class EventSink(Protocol):
    async def append(self, topic: str, event: Event) -> Position: ...


class BlobStore(Protocol):
    async def put_bytes(self, data: bytes, content_type: str = ...) -> str: ...
    async def get_json(self, ref: str) -> Any: ...


TRANSIENT = (KafkaError, CasError, OSError, InfrastructureFault)
# Kafka errors that no retry mends: an event too large is as large on the next try.
PERMANENT_KAFKA_ERRORS = (MessageSizeTooLargeError,)


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault that passes if the task is tried again later (the offset
    is then left uncommitted); anything else met on a task is reported, never retried here."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, PERMANENT_KAFKA_ERRORS)


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
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self._events = events
        self._store = store
        self._handlers = handlers
        self._worker = worker_name
        self._runs_topic = runs_topic
        self._default_timeout = default_timeout_s
        self._max_backoff = max_backoff_s
        self._remember = remember_tasks
        self._max_output = max_output_bytes
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Future[bool]] = {}
        self.duplicates_skipped = 0

    async def run(self, task: NodeTask) -> None:
        """Execute ``task`` once; a copy of a task finished or running here is not run again.

        Raises only for an infrastructure fault that outlived the retries (or cancellation),
        and ``TaskCrashed`` for a bug met on the task, after reporting its node failed.
        """
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
            await self._execute_or_report_crash(task)
            finished = True
        except TaskCrashed as e:
            finished = e.reported
            if e.reported:  # its outcome is in the log: a copy must not run again
                self._remember_finished(task.task_id)
            raise
        finally:
            if self._running.get(task.task_id) is done:
                del self._running[task.task_id]
            done.set_result(finished)
        self._remember_finished(task.task_id)

    def _remember_finished(self, task_id: str) -> None:
        self._finished[task_id] = None
        if len(self._finished) > self._remember:
            self._finished.popitem(last=False)

    async def _execute_or_report_crash(self, task: NodeTask) -> None:
        """``_execute``, with a bug turned into a failed node and ``TaskCrashed`` (module doc)."""
        try:
            await self._execute(task)
        except Exception as e:
            if is_infrastructure_fault(e):
                raise
            log.exception("the worker failed on task %s", task.task_id)
            reason = f"the worker failed on this task: {type(e).__name__}: {e}"
            reported = await self._report_crash(task, reason)
            raise TaskCrashed(task.task_id, reason, reported=reported) from e

    async def _report_crash(self, task: NodeTask, reason: str) -> bool:
        """Whether the node could be reported failed (not if even that fails: a bug again)."""
        try:
            event = reports.failed(task, reports.node_reason(task, reason), retryable=True)
            await self._report(event)
        except Exception as e:
            if is_infrastructure_fault(e):
                raise
            log.exception("task %s: its failure could not be reported either", task.task_id)
            return False
        return True

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
            data = encoded_output(output, self._max_output)  # OutputRefused: a NodeError
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
            lambda: self._events.append(self._runs_topic, event),
            f"append {event.type}",
            permanent=PERMANENT_KAFKA_ERRORS,
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
