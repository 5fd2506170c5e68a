"""A registered node type as an agent's tool: the call is a task for the type's workers.

The agent's worker sends a ``NodeTask`` to ``aob.tasks.<type>`` whose ``config`` is the
call's arguments and whose ``tool_call`` says whose call it is; the worker serving the type
runs its handler and, instead of reporting a node outcome, appends ``run.tool_called``
(``workers.execute``). The agent waits for that event in the run's partition, as for a
patch's verdict (``workers.agent.run_answers``). The task's id is a pure function of the
agent's task and the call, so a copy sent again is recognised as the same task; its
idempotency key is the call's (``NodeTask.idempotency_key``), the same in every attempt
of the agent that makes the same call.

The call's time limit is the type's ``timeout_s`` when the registry gives one, else
``DEFAULT_TOOL_TIMEOUT_S``, within the attempt's own. A call with no answer in time is an
error for the model, not a failed node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from infra.run_log import RunPartition, run_event
from schemas.agent_tools import ToolCallOrigin
from schemas.codec import HEADER_TYPE
from schemas.envelope import deterministic_id
from schemas.events import ToolCalled
from schemas.tasks import NodeTask
from workers.agent.run_answers import CLOCK_MARGIN_S, first_match, first_offset, read_run
from workers.agent.tool_calls import ToolFailed, ToolOutcome
from workers.handlers.base import Job

DEFAULT_TOOL_TIMEOUT_S = 60.0
# Waited for past the call's own limit: its worker reports the timeout itself.
ANSWER_GRACE_S = 5.0
DEADLINE_MARGIN_S = 1.0
MAX_DESCRIPTION_CHARS = 1000
TOOL_CALLED_TYPE = ToolCalled.wire_name.encode()


def node_type_definition(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The tool definition of a registered type: its config schema as the parameters."""
    schema = spec.get("config_schema")
    parameters = dict(schema) if isinstance(schema, dict) and schema else {}
    parameters.setdefault("type", "object")
    description = str(spec.get("description") or f"Run the {name!r} node type once.")
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description[:MAX_DESCRIPTION_CHARS],
            "parameters": parameters,
        },
    }


def tool_task_id(agent_task_id: str, call_id: str) -> str:
    return deterministic_id(agent_task_id, "tool_task", call_id)


@dataclass(frozen=True)
class ResultQuery:
    run_id: str
    call_id: str
    since: datetime  # no answer to the call is older (when its task was sent)
    timeout_s: float


class ToolResults(Protocol):
    async def wait(self, query: ResultQuery, /) -> ToolCalled | None:
        """The ``run.tool_called`` of ``query.call_id``, or None if none came within
        ``query.timeout_s``. Kafka faults propagate."""
        ...


class KafkaToolResults:
    """Answers read from the runs topic (the module doc)."""

    def __init__(
        self, bootstrap: str, topic: str, *, client_id: str = "aob-agent-tool-results"
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._client_id = client_id

    async def wait(self, query: ResultQuery, /) -> ToolCalled | None:
        return await read_run(
            self._bootstrap,
            self._topic,
            query.run_id,
            partition=None,
            read=lambda run: self._scan(run, query),
            timeout_s=query.timeout_s,
            client_id=self._client_id,
        )

    async def _scan(self, run: RunPartition, query: ResultQuery) -> ToolCalled | None:
        start = await first_offset(run, None, query.since, CLOCK_MARGIN_S)
        found = await first_match(run, start, lambda record: _answer_in(record, query.call_id))
        return found[0] if found is not None else None


def _answer_in(record: ConsumerRecord, call_id: str) -> ToolCalled | None:
    if dict(record.headers or ()).get(HEADER_TYPE) != TOOL_CALLED_TYPE:
        return None
    event = run_event(record)
    if isinstance(event, ToolCalled) and event.payload.call_id == call_id:
        return event
    return None


class NodeToolRunner:
    """Calls of registered node types for one agent attempt (the module doc)."""

    def __init__(
        self,
        job: Job,
        results: ToolResults,
        *,
        deadline: float,
        clock: Callable[[], float],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._job = job
        self._results = results
        self._deadline = deadline
        self._clock = clock
        self._now = now

    def runner(
        self, name: str, spec: dict[str, Any]
    ) -> Callable[[str, dict[str, Any]], Awaitable[ToolOutcome]]:
        async def run(cid: str, args: dict[str, Any]) -> ToolOutcome:
            return await self.call(name, spec, cid, args)

        return run

    def task(self, name: str, cid: str, args: dict[str, Any], timeout_s: float) -> NodeTask:
        agent = self._job.task
        return NodeTask(
            task_id=tool_task_id(agent.task_id, cid),
            run_id=agent.run_id,
            tenant=agent.tenant,
            node_id=agent.node_id,
            node_type=name,
            attempt=agent.attempt,
            config=args,
            timeout_s=timeout_s,
            scheduled_at=self._now(),
            version=agent.version,
            tool_call=ToolCallOrigin(
                call_id=cid,
                node_id=agent.node_id,
                attempt=agent.attempt,
                agent_task_id=agent.task_id,
                tool=name,
            ),
        )

    async def call(
        self, name: str, spec: dict[str, Any], cid: str, args: dict[str, Any]
    ) -> ToolOutcome:
        left = self._deadline - DEADLINE_MARGIN_S - self._clock()
        limit = spec.get("timeout_s")
        own = float(limit) if isinstance(limit, int | float) and limit > 0 else None
        timeout = min(own or DEFAULT_TOOL_TIMEOUT_S, left - ANSWER_GRACE_S)
        if timeout < 1.0:
            raise ToolFailed(f"no time left in this attempt to call {name}")
        task = self.task(name, cid, args, timeout)
        assert self._job.send_task is not None  # checked when the toolbox was opened
        await self._job.send_task(task)
        query = ResultQuery(
            run_id=task.run_id,
            call_id=cid,
            since=task.scheduled_at or self._now(),
            timeout_s=timeout + ANSWER_GRACE_S,
        )
        try:
            answer = await self._results.wait(query)
        except KafkaError as e:
            raise ToolFailed(f"could not read the answer of {name}: {e}") from e
        if answer is None:
            raise ToolFailed(
                f"{name} gave no answer within {query.timeout_s:.0f}s (is a worker serving "
                f"the node type {name!r} running?)"
            )
        p = answer.payload
        return ToolOutcome(
            ok=p.ok, result=p.result, error=p.error, recorded=True, result_ref=p.result_ref
        )
