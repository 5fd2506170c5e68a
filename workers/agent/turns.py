"""Asking the coordinator before each model call, in a run with a budget.

The coordinator holds the budget and folds every model call of the run, whichever node made
it; the worker knows only its own. So before each call an agent whose task carries a budget
appends ``run.turn_requested`` and waits for the answer, ``run.turn_granted`` or
``run.budget_exceeded`` (``run_model.budgets`` says how it is decided). Exceeded, the agent
stops without a report of its own: the coordinator has failed the node, or left it waiting
for a raise. Runs without a budget ask nothing and wait for nothing.

The answer is read from the run's partition, as patch verdicts are (``workers.agent.
run_answers``, which also says why the first wait of an attempt starts a little before the
task was scheduled); each later wait starts after the previous answer. Records
of other runs are skipped by key, and records of types that cannot answer by their type
header, before anything is decoded.

An attempt can also end while it waits, by someone else's decision: the run finished or is
being cancelled, the coordinator timed the attempt out, or scheduled a newer one. Such an
event answers too, and the agent stops without a report: its node has moved on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError

from infra.run_log import RunPartition, run_event
from schemas.codec import HEADER_TYPE
from schemas.envelope import Event
from schemas.events import (
    BudgetExceeded,
    NodeFailed,
    NodeScheduled,
    NodeSkipped,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    TurnGranted,
    TurnRequested,
    TurnRequestedPayload,
)
from schemas.position import Position
from schemas.reports import report
from workers.agent.run_answers import CLOCK_MARGIN_S, first_match, first_offset, read_run
from workers.errors import NodeError
from workers.handlers.base import Job

log = logging.getLogger(__name__)

# Stop waiting this long before the attempt's deadline, so that the node fails with the
# reason below rather than with the executor's bare timeout.
DEADLINE_MARGIN_S = 1.0

ANSWER_TYPES = frozenset(
    kind.wire_name.encode()
    for kind in (
        TurnGranted,
        BudgetExceeded,
        NodeFailed,
        NodeSkipped,
        NodeScheduled,
        RunCompleted,
        RunFailed,
        RunCancelled,
        RunCancelRequested,
    )
)


@dataclass(frozen=True)
class TurnQuery:
    """Which answer to wait for, where to look, and for how long."""

    run_id: str
    node_id: str
    attempt: int
    turn: int
    asked: Position | None  # where the TurnRequested landed, when the reporter said
    since: datetime | None  # no answer about this attempt is older (the task's scheduled_at)
    after: int | None  # the offset of the attempt's previous answer, if any
    timeout_s: float


@dataclass(frozen=True)
class TurnAnswer:
    event: Event
    offset: int

    @property
    def granted(self) -> bool:
        return isinstance(self.event, TurnGranted)


class TurnAnswers(Protocol):
    async def wait(self, query: TurnQuery, /) -> TurnAnswer | None:
        """The event that answers ``query`` and its offset, or None if none came within
        ``query.timeout_s``. Kafka faults propagate (``aiokafka.errors.KafkaError``)."""
        ...


def answers(event: Event, query: TurnQuery) -> bool:
    """Whether ``event`` (one of the run's) answers ``query`` (the module doc)."""
    if isinstance(event, RunCompleted | RunFailed | RunCancelled | RunCancelRequested):
        return True
    p = getattr(event, "payload", None)
    if getattr(p, "node_id", None) != query.node_id:
        return False
    if isinstance(event, TurnGranted | BudgetExceeded):
        return (event.payload.attempt, event.payload.turn) == (query.attempt, query.turn)
    if isinstance(event, NodeFailed):
        return event.payload.attempt == query.attempt
    if isinstance(event, NodeScheduled):
        return event.payload.attempt > query.attempt
    return isinstance(event, NodeSkipped)


def answer_in(record: ConsumerRecord, query: TurnQuery) -> Event | None:
    """The answer ``record`` holds, if it holds one; other records are skipped by their type
    header, before any decoding."""
    if dict(record.headers or ()).get(HEADER_TYPE) not in ANSWER_TYPES:
        return None
    event = run_event(record)
    return event if event is not None and answers(event, query) else None


class KafkaTurnAnswers:
    """Answers read from the runs topic (the module doc)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        clock_margin_s: float = CLOCK_MARGIN_S,
        client_id: str = "aob-agent-turns",
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._margin_s = clock_margin_s
        self._client_id = client_id

    async def wait(self, query: TurnQuery, /) -> TurnAnswer | None:
        asked = query.asked
        return await read_run(
            self._bootstrap,
            self._topic,
            query.run_id,
            partition=asked.partition if asked is not None else None,
            read=lambda run: self._scan(run, query),
            timeout_s=query.timeout_s,
            client_id=self._client_id,
        )

    async def _scan(self, run: RunPartition, query: TurnQuery) -> TurnAnswer | None:
        if query.after is not None:  # after the attempt's previous answer
            start = query.after + 1
        else:
            at = query.asked.offset if query.asked is not None else None
            start = await first_offset(run, at, query.since, self._margin_s)
        found = await first_match(run, start, lambda record: answer_in(record, query))
        return TurnAnswer(*found) if found is not None else None


class TurnGate:
    """One attempt's requests for model calls (the module doc)."""

    def __init__(
        self, job: Job, answers: TurnAnswers, *, deadline: float, clock: Callable[[], float]
    ) -> None:
        self._job = job
        self._answers = answers
        self._deadline = deadline
        self._clock = clock
        self._after: int | None = None

    async def may_call(self, turn: int, model: str) -> bool:
        """Whether the coordinator lets model call ``turn`` go. False: it was refused (the
        budget), or the attempt ended meanwhile; either way the node's fate is decided, and
        the attempt stops without a report. NodeError (retryable) if no answer comes in
        time or the log cannot be read."""
        task = self._job.task
        payload = TurnRequestedPayload(
            node_id=task.node_id, attempt=task.attempt, turn=turn, model=model
        )
        asked = await self._job.emit(
            report(TurnRequested, task, payload, "turn_requested", str(turn))
        )
        timeout = max(self._deadline - DEADLINE_MARGIN_S - self._clock(), 0.0)
        query = TurnQuery(
            run_id=task.run_id,
            node_id=task.node_id,
            attempt=task.attempt,
            turn=turn,
            asked=asked,
            since=task.scheduled_at,
            after=self._after,
            timeout_s=timeout,
        )
        try:
            answer = await self._answers.wait(query)
        except KafkaError as e:
            raise NodeError(
                f"could not read the answer to the request for model call {turn}: {e}",
                retryable=True,
            ) from e
        if answer is None:
            raise NodeError(
                f"no answer to the request for model call {turn} within {timeout:.0f}s "
                "(is the coordinator running?)",
                retryable=True,
            )
        self._after = answer.offset
        if not answer.granted:
            log.info(
                "task %s stops before model call %d: %s", task.task_id, turn, answer.event.type
            )
        return answer.granted
