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

Secrets. A config that names ``{{ secrets.NAME }}`` gets those values, fetched from the
tenant's store (``workers.secret_values``) before the attempt starts, in its template context;
an unknown secret fails the node, not retryable, naming it. From then on the attempt's
``Redactor`` (``workers.redaction``) masks every value it used in all the attempt reports:
the output (before the CAS), every event (through the attempt's own reporter, which the
handler's ``Job.emit`` uses too), the reasons of failures and the log lines about them.

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
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from cas.store import BlobCorrupted, BlobNotFound, CasError
from schemas import reports
from schemas.agent_tools import ToolCallOrigin, arguments_digest
from schemas.envelope import Event
from schemas.events import ToolCalled, ToolCalledPayload, WaitingFor
from schemas.position import Position
from schemas.secret_refs import SecretReferenceError, secret_references
from schemas.tasks import NodeTask
from schemas.topics import RUN_EVENTS
from schemas.workflow import DEFAULT_TIMEOUT_S
from templating import TemplateError, renders
from workers.errors import ConfigError, InfrastructureFault, NodeError, TaskCrashed
from workers.handlers.base import WAITING, Handler, Job
from workers.outcome import classify
from workers.outputs import DEFAULT_MAX_OUTPUT_BYTES, encoded_output
from workers.redaction import Redactor, masking
from workers.secret_values import SecretSource, resolve
from workers.start_report import DEFAULT_REPORT_START_AFTER_S, StartReport

log = logging.getLogger(__name__)

T = TypeVar("T")


class EventSink(Protocol):
    async def append(self, topic: str, event: Event) -> Position: ...


class BlobStore(Protocol):
    async def put_bytes(self, data: bytes, content_type: str = ...) -> str: ...
    async def get_json(self, ref: str) -> Any: ...


class TaskSink(Protocol):
    async def send_task(self, task: NodeTask) -> Position: ...


# A rendered concurrency key longer than this fails the node: it is a key, not a document.
MAX_CONCURRENCY_KEY_CHARS = 1000

TRANSIENT = (KafkaError, CasError, OSError, InfrastructureFault)
# Kafka errors that no retry mends: an event too large is as large on the next try.
PERMANENT_KAFKA_ERRORS = (MessageSizeTooLargeError,)


def is_infrastructure_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault that passes if the task is tried again later (the offset
    is then left uncommitted); anything else met on a task is reported, never retried here."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, PERMANENT_KAFKA_ERRORS)


class _Attempt:
    """What the executor learns about one attempt as it goes: the redactor of its secrets
    (none until they are read), which the crash report of ``_execute`` needs too."""

    def __init__(self) -> None:
        self.redactor = Redactor()


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
        secrets: SecretSource | None = None,
        tasks: TaskSink | None = None,
        report_start_after_s: float = DEFAULT_REPORT_START_AFTER_S,
    ) -> None:
        self._events = events
        self._report_start_after_s = report_start_after_s
        self._tasks = tasks
        self._store = store
        self._handlers = handlers
        self._worker = worker_name
        self._runs_topic = runs_topic
        self._default_timeout = default_timeout_s
        self._max_backoff = max_backoff_s
        self._remember = remember_tasks
        self._max_output = max_output_bytes
        self._secrets = secrets
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._running: dict[str, asyncio.Future[bool]] = {}
        self.duplicates_skipped = 0

    @property
    def worker_name(self) -> str:
        """The name this worker process reports its attempts under."""
        return self._worker

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

    # --- what fair execution asks of it (workers.fair) -----------------------------------

    async def concurrency_key(self, task: NodeTask) -> str:
        """``task``'s concurrency key rendered over its run context, without secrets (the
        key is shown and stored in clear). NodeError when it cannot be: the node fails."""
        if task.concurrency is None:
            raise ConfigError("the node declares no concurrency key")
        template = task.concurrency.key
        context: dict[str, Any] = {"input": task.input, "nodes": {}}
        if task.index is not None:
            context.update(item=task.item, index=task.index)
        if "nodes" in template:  # only then are upstream outputs worth reading from the CAS
            try:
                context = await self._context(task)
            except (BlobNotFound, BlobCorrupted) as e:
                raise NodeError(f"could not read an upstream output: {e}", retryable=True) from e
        try:
            key = await renders.render_string(template, context)
        except TemplateError as e:
            raise ConfigError(f"concurrency key: template error: {e}") from e
        if len(key) > MAX_CONCURRENCY_KEY_CHARS:
            raise ConfigError(
                f"concurrency key: it renders to {len(key)} characters, over "
                f"{MAX_CONCURRENCY_KEY_CHARS}"
            )
        return key

    async def refuse(self, task: NodeTask, error: NodeError) -> None:
        """Fail ``task``'s node without running it (its concurrency key did not render)."""
        reason = reports.node_reason(task, str(error))
        await self._report(reports.failed(task, reason, retryable=error.retryable))
        self._remember_finished(task.task_id)

    async def report_queued(self, task: NodeTask, waiting_for: WaitingFor, reason: str) -> None:
        """Tell the run that ``task`` waits here for a limit (``run.node_queued``). Only
        informative: after a few failed tries it is given up, the task waits all the same."""
        event = reports.queued(task, self._worker, waiting_for, reason)
        await self._retrying(
            lambda: self._events.append(self._runs_topic, event),
            f"append {event.type}",
            attempts=3,
            permanent=PERMANENT_KAFKA_ERRORS,
        )

    def _remember_finished(self, task_id: str) -> None:
        self._finished[task_id] = None
        if len(self._finished) > self._remember:
            self._finished.popitem(last=False)

    async def _execute_or_report_crash(self, task: NodeTask) -> None:
        """``_execute``, with a bug turned into a failed node and ``TaskCrashed`` (module doc)."""
        attempt = _Attempt()
        try:
            await self._execute(task, attempt)
        except Exception as e:
            if is_infrastructure_fault(e):
                raise
            # The traceback quotes the exception, which may quote a secret: masked first.
            trace = attempt.redactor.text("".join(traceback.format_exception(e)))
            log.error("the worker failed on task %s\n%s", task.task_id, trace)
            reason = attempt.redactor.text(
                f"the worker failed on this task: {type(e).__name__}: {e}"
            )
            reported = await self._report_crash(task, reason)
            raise TaskCrashed(task.task_id, reason, reported=reported) from e

    async def _report_crash(self, task: NodeTask, reason: str) -> bool:
        """Whether the node could be reported failed (not if even that fails: a bug again).
        An agent's tool call is not a node of its own: it is parked unreported, and the
        agent learns that the call had no answer in time."""
        if task.tool_call is not None:
            return False
        try:
            event = reports.failed(task, reports.node_reason(task, reason), retryable=True)
            await self._report(event)
        except Exception as e:
            if is_infrastructure_fault(e):
                raise
            log.exception("task %s: its failure could not be reported either", task.task_id)
            return False
        return True

    async def _execute(self, task: NodeTask, attempt: _Attempt) -> None:
        if task.tool_call is not None:
            await self._tool_call(task, task.tool_call)
            return
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

        try:
            secrets = await self._secret_values(task)
        except NodeError as e:
            await self._report(
                reports.failed(task, reports.node_reason(task, str(e)), retryable=False)
            )
            return
        redactor = attempt.redactor = Redactor(secrets)
        with masking(redactor):  # what this attempt logs from here on (workers.redaction)
            await self._attempt(task, handler, context, secrets, redactor)

    async def _attempt(
        self,
        task: NodeTask,
        handler: Handler,
        context: dict[str, Any],
        secrets: dict[str, str],
        redactor: Redactor,
    ) -> None:
        """Run the handler and report its outcome, every value of ``secrets`` masked.

        The attempt's outcome tells when it started; its NodeStarted is sent before its
        first other report, or after ``report_start_after_s``, and not at all for a quicker
        attempt (``workers.start_report``). A start sent on its own is not waited for: the
        handler runs while the broker acknowledges it, and the outcome is pipelined behind
        it. The attempt ends
        only once both are acknowledged, so the task's offset never moves past an untold
        start. Should the start be retried after its outcome got through, it comes after it
        in the log, and the coordinator and the projections ignore a start of a node that
        has already finished."""
        start = StartReport(
            lambda at: reports.started(task, self._worker, at=at),
            self._report,
            self._report_start_after_s,
        )

        async def report(event: Event) -> Position:
            return await self._report(redactor.event(await start.before(event)))

        try:
            await self._outcome(task, handler, context, secrets, redactor, report)
        except BaseException:
            start.cancel()  # the task is done again (its offset stays uncommitted)
            raise
        await start.settle()

    async def _outcome(  # noqa: PLR0917 - the attempt's parts, passed on from _attempt
        self,
        task: NodeTask,
        handler: Handler,
        context: dict[str, Any],
        secrets: dict[str, str],
        redactor: Redactor,
        report: Callable[[Event], Awaitable[Position]],
    ) -> None:
        """Run the handler, and report what it gave or why it failed."""
        timeout = task.timeout_s or self._default_timeout
        try:
            job = Job(task, context, report, secrets, store=self._store, send_task=self._send_task)
            output = await asyncio.wait_for(handler(job), timeout)
            if output is WAITING:
                return  # the node waits outside the worker; its handler reported why
            output = redactor.value(output)
            data = encoded_output(output, self._max_output)  # OutputRefused: a NodeError
        except Exception as e:  # noqa: BLE001 - every handler failure is reported, see outcome
            what, retryable = classify(e, timeout)
            what = redactor.text(what)
            log.info("task %s failed: %s", task.task_id, what)
            await report(reports.failed(task, reports.node_reason(task, what), retryable=retryable))
            return
        ref = None
        if not reports.inline(len(data)):  # small outputs travel in the event, not the CAS
            ref = await self._retrying(
                lambda: self._store.put_bytes(data, "application/json"), "store output"
            )
        await report(reports.succeeded(task, output, ref, len(data)))

    @property
    def _send_task(self) -> Callable[[NodeTask], Awaitable[Position]] | None:
        return self._tasks.send_task if self._tasks is not None else None

    async def _tool_call(self, task: NodeTask, origin: ToolCallOrigin) -> None:
        """An agent's call of this node type (``workers.agent.node_tools``): run the handler
        on the call's arguments and answer with ``run.tool_called``, never a node outcome
        (the node is the agent's). The arguments are a model's: they read no secret, and the
        handler sees no run context but them. Every failure is an answer (``ok: false``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        handler = self._handlers.get(task.node_type)
        timeout = task.timeout_s or self._default_timeout
        ok, output, ref, error = False, None, None, None
        if handler is None:
            error = f"no handler for node type {task.node_type!r} in this worker"
        else:
            try:
                if secret_references(task.config):
                    raise ConfigError("a tool call's arguments may not read secrets")
                job = Job(
                    task,
                    {"input": None, "nodes": {}},
                    self._report,
                    store=self._store,
                    send_task=self._send_task,
                )
                output = await asyncio.wait_for(handler(job), timeout)
                if output is WAITING:
                    raise ConfigError(f"node type {task.node_type!r} waits: it cannot be a tool")
                data = encoded_output(output, self._max_output)
                ok = True
            except SecretReferenceError as e:
                error = str(e)
            except Exception as e:  # noqa: BLE001 - every failure is the model's to read
                error, _ = classify(e, timeout)
        if ok and not reports.inline(len(data)):
            ref = await self._retrying(
                lambda: self._store.put_bytes(data, "application/json"), "store tool result"
            )
            output = None
        payload = ToolCalledPayload(
            node_id=origin.node_id,
            attempt=origin.attempt,
            call_id=origin.call_id,
            tool=origin.tool,
            arguments_sha256=arguments_digest(task.config),
            ok=ok,
            result=output if ok else None,
            result_ref=ref,
            error=None if ok else reports.reason_text(error or "the call failed"),
            duration_ms=max(loop.time() - started, 0.0) * 1000,
        )
        await self._report(reports.report(ToolCalled, task, payload, "tool_called"))

    async def _secret_values(self, task: NodeTask) -> dict[str, str]:
        """The values of the secrets ``task``'s config names ({} if none); a NodeError
        naming what is wrong (a secret not set, a computed reference, no store here)."""
        try:
            names = secret_references(task.config)
        except SecretReferenceError as e:
            raise ConfigError(str(e)) from None
        if not names:
            return {}
        if self._secrets is None:
            raise ConfigError("this worker has no secrets store to read secrets from")
        source = self._secrets
        return await self._retrying(
            lambda: resolve(source, task.tenant, sorted(names)), "read secrets"
        )

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
        context: dict[str, Any] = {"input": task.input, "nodes": nodes}
        if task.index is not None:  # one item of a map node (``run_model.mapping``)
            context.update(item=task.item, index=task.index)
        return context

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
