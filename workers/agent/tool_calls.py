"""Durable tool calls: each call an agent's model makes ends in one ``run.tool_called``, and
a call that has answered is never made again for the same node.

A call's id is a pure function of the run, the node, the tool, the canonical JSON of its
arguments and its ordinal among identical calls of the attempt (``schemas.agent_tools.
call_id``). Before making a call, the worker looks its id up among the calls that answered
already:

- those of earlier attempts, which the coordinator folded and put in the task
  (``NodeTask.tool_calls``);
- those of this very attempt, when its task was delivered again (the worker was killed after
  a call answered, and the task came back before any retry): they are in the run's
  partition after the task was scheduled, and ``ToolHistory`` reads them from there once,
  at the attempt's first call.

Found, the recorded result is the answer (read from the CAS when it was large); else the
call is made and its ``run.tool_called`` appended (by the worker of the node type, for a
registered type's call: ``workers.execute``). A call that failed is not reused: a later
attempt may call again, and its failure was the model's to read in the attempt that made it.
A failure is an answer to the model (``error: …``), never a failed node.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from infra.run_log import open_run_partition, run_event
from schemas.agent_tools import ToolCallRecord, arguments_digest, call_id
from schemas.codec import HEADER_TYPE
from schemas.events import ToolCalled, ToolCalledPayload
from schemas.reports import reason_text, report
from schemas.tasks import NodeTask
from workers.agent.run_answers import CLOCK_MARGIN_S
from workers.errors import NodeError
from workers.handlers.base import Job
from workers.outputs import encoded_output

log = logging.getLogger(__name__)

# What of a result the model is shown, at most: the whole stays in the event or the CAS.
MAX_REPLY_CHARS = 50_000
TOOL_CALLED_TYPE = ToolCalled.wire_name.encode()
INLINE_RESULT_MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class ToolOutcome:
    """What one call came to. ``recorded``: its ``run.tool_called`` is appended already (by
    the node type's worker), so the caller appends none."""

    ok: bool
    result: Any = None
    error: str | None = None
    recorded: bool = False
    result_ref: str | None = None


class ToolFailed(Exception):
    """A tool call that did not answer; the message is what the model is told."""


class ToolHistory(Protocol):
    async def calls(self, task: NodeTask, /) -> list[ToolCallRecord]:
        """The tool calls of ``task``'s node recorded in the run's log since the task was
        scheduled (this attempt's, when it was delivered before). Kafka faults propagate."""
        ...


def record_of(event: ToolCalled) -> ToolCallRecord:
    p = event.payload
    return ToolCallRecord(
        call_id=p.call_id,
        tool=p.tool,
        attempt=p.attempt,
        ok=p.ok,
        result=p.result,
        result_ref=p.result_ref,
        error=p.error,
    )


class KafkaToolHistory:
    """The node's ``run.tool_called`` events from a little before the task was scheduled to
    the end of the run's partition now (``workers.agent.run_answers`` says why earlier)."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str = "aob-agent-tools") -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._client_id = client_id

    async def calls(self, task: NodeTask, /) -> list[ToolCallRecord]:
        if task.scheduled_at is None:
            return []
        found: list[ToolCallRecord] = []
        async with open_run_partition(
            self._bootstrap, task.run_id, topic=self._topic, client_id=self._client_id
        ) as run:
            end = await run.end()
            start = await run.offset_since(task.scheduled_at - timedelta(seconds=CLOCK_MARGIN_S))
            if start is None:
                return []
            async for record in run.records(start, end):
                called = tool_called_in(record, task.node_id)
                if called is not None:
                    found.append(record_of(called))
        return found


def tool_called_in(record: ConsumerRecord, node_id: str) -> ToolCalled | None:
    """The ``run.tool_called`` of ``node_id`` that ``record`` holds, if it holds one; other
    records are skipped by their type header, before any decoding."""
    if dict(record.headers or ()).get(HEADER_TYPE) != TOOL_CALLED_TYPE:
        return None
    event = run_event(record)
    if isinstance(event, ToolCalled) and event.payload.node_id == node_id:
        return event
    return None


def reply_text(outcome: ToolOutcome, result: Any) -> str:
    """What the model reads: the result as JSON (a string as it is), or the error."""
    if not outcome.ok:
        return f"error: {outcome.error or 'the tool call failed'}"
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    if len(text) > MAX_REPLY_CHARS:
        text = text[:MAX_REPLY_CHARS] + f"… (cut: {len(text)} characters in all)"
    return text


Run = Callable[[str], Awaitable[ToolOutcome]]


class ToolCaller:
    """One attempt's tool calls (the module doc)."""

    def __init__(
        self,
        job: Job,
        history: ToolHistory | None,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._job = job
        self._history = history
        self._clock = clock
        self._ordinals: Counter[tuple[str, str]] = Counter()
        self._known: dict[str, ToolCallRecord] | None = None
        self.made = 0  # calls made by this attempt (not reused)
        self.reused = 0

    async def _answered(self) -> dict[str, ToolCallRecord]:
        if self._known is None:
            known = {r.call_id: r for r in self._job.task.tool_calls if r.ok}
            if self._history is not None:
                try:
                    logged = await self._history.calls(self._job.task)
                except KafkaError as e:
                    raise NodeError(
                        f"could not read the node's earlier tool calls: {e}", retryable=True
                    ) from e
                known.update({r.call_id: r for r in logged if r.ok and r.call_id not in known})
            self._known = known
        return self._known

    def call_id(self, tool: str, arguments: Any) -> str:
        """The id of the next call of ``tool`` with ``arguments`` (counts it)."""
        key = (tool, arguments_digest(arguments))
        ordinal = self._ordinals[key]
        self._ordinals[key] += 1
        task = self._job.task
        return call_id(task.run_id, task.node_id, tool, arguments, ordinal)

    async def call(self, tool: str, arguments: dict[str, Any], run: Run) -> str:
        """The model's answer for ``tool(arguments)``: the recorded result if the call
        answered before, else ``run(call_id)``'s, recorded."""
        cid = self.call_id(tool, arguments)
        known = (await self._answered()).get(cid)
        if known is not None:
            self.reused += 1
            result = known.result
            if known.result_ref is not None:
                result = await self._read(known.result_ref)
            log.info("tool call %s (%s) answered before: its result is reused", cid, tool)
            return reply_text(ToolOutcome(ok=True), result)
        started = self._clock()
        try:
            outcome = await run(cid)
        except ToolFailed as e:
            outcome = ToolOutcome(ok=False, error=reason_text(str(e)))
        except NodeError as e:  # the http node's errors, a bad argument
            outcome = ToolOutcome(ok=False, error=reason_text(str(e)))
        self.made += 1
        if not outcome.recorded:
            outcome = await self._record(tool, arguments, cid, outcome, self._clock() - started)
        result = outcome.result
        if outcome.ok and outcome.result_ref is not None and result is None:
            result = await self._read(outcome.result_ref)
        return reply_text(outcome, result)

    async def _read(self, ref: str) -> Any:
        store = self._job.store
        if store is None:
            raise NodeError("this worker has no CAS to read a tool result from", retryable=True)
        return await store.get_json(ref)

    async def _record(
        self, tool: str, arguments: Any, cid: str, outcome: ToolOutcome, took_s: float
    ) -> ToolOutcome:
        """Append the call's ``run.tool_called``; the outcome as recorded (a result that
        breaks the value rules is recorded, and answered, as a failure)."""
        task = self._job.task
        result, ref, error, ok = outcome.result, None, outcome.error, outcome.ok
        if ok:
            try:
                data = encoded_output(result)
            except NodeError as e:  # a result that breaks the value rules, or too large
                ok, result, error = False, None, reason_text(f"the tool's result was refused: {e}")
            else:
                if len(data) > INLINE_RESULT_MAX_BYTES:
                    ref = await self._store(data)
        payload = ToolCalledPayload(
            node_id=task.node_id,
            attempt=task.attempt,
            call_id=cid,
            tool=tool,
            arguments_sha256=arguments_digest(arguments),
            ok=ok,
            result=result if ok and ref is None else None,
            result_ref=ref,
            error=None if ok else error,
            duration_ms=max(took_s, 0.0) * 1000,
        )
        await self._job.emit(report(ToolCalled, task, payload, "tool_called", cid))
        return ToolOutcome(ok=ok, result=result if ok else None, error=payload.error)

    async def _store(self, data: bytes) -> str:
        store = self._job.store
        if store is None:
            raise NodeError("this worker has no CAS to keep a large tool result in")
        return await store.put_bytes(data, "application/json")
