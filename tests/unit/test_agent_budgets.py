"""The agent node's limits against the scripted model, served in process: ``max_tokens`` on
each call, the models a tenant allows, each call priced, and, in a run with a budget, each
call asked for first and answered by the real decider (``run_model``) over an in-memory log.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from openai import AsyncOpenAI

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.serve import Running
from run_model import NodeStatus, RunState, RunStatus, step
from run_model.testing import (
    EPOCH,
    approval_submitted,
    build_ir,
    model_called,
    run_submitted,
    started,
    turn_requested,
)
from schemas.budgets import AgentRunLimits, Budget, BudgetRaise, Price
from schemas.codec import encode_event
from schemas.envelope import Event, build_event, system_actor
from schemas.events import (
    BudgetExceeded,
    ModelCalled,
    NodeFailed,
    NodeScheduled,
    RunCancelRequested,
    RunFailed,
    TurnGranted,
    TurnRequested,
)
from schemas.position import Position
from schemas.tasks import NodeTask
from workers.agent.calls import RetryPolicy
from workers.agent.handler import AgentHandler
from workers.agent.turns import KafkaTurnAnswers, TurnAnswer, TurnQuery, answers
from workers.agent.verdicts import Verdict, VerdictQuery
from workers.errors import ConfigError, NodeError
from workers.handlers import WAITING, Job

TOPIC = "aob.runs.events"


class NoVerdicts:
    async def wait(self, query: VerdictQuery, /) -> Verdict | None:
        raise AssertionError(f"no patch was expected here, got {query}")


class Coordinator:
    """The run model behind an in-memory log: what the agent appends is stepped through the
    decider in order, as the coordinator would, and requests for model calls are answered
    from the log (``workers.agent.turns.answers``, the matching the Kafka reader uses)."""

    def __init__(self, agent_limits: AgentRunLimits | None) -> None:
        self.state: RunState | None = None
        self.log: list[Event] = []
        self.tasks: list[NodeTask] = []
        ir = build_ir({"write": "agent"}, [], timeout_s=30)
        self.append(run_submitted("run-1", ir, agent_limits=agent_limits))

    async def report(self, event: Event) -> Position:
        return self.append(event)

    def append(self, event: Event) -> Position:
        at = Position(TOPIC, 0, len(self.log))
        self.log.append(event)
        self.state, decision = step(self.state, event, EPOCH)
        self.log.extend(decision.events)
        self.tasks.extend(decision.tasks)
        return at

    async def wait(self, query: TurnQuery, /) -> TurnAnswer | None:
        start = query.after + 1 if query.after is not None else 0
        for offset in range(start, len(self.log)):
            if answers(self.log[offset], query):
                return TurnAnswer(self.log[offset], offset)
        return None

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.log if isinstance(e, kind)]


@pytest.fixture
async def client(scripted: Running) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=scripted.base_url, api_key="test", max_retries=0) as c:
        yield c


def handler(client: AsyncOpenAI, turns: Coordinator | None) -> AgentHandler:
    return AgentHandler(
        client,
        default_model="gpt-4o-mini",
        verdicts=NoVerdicts(),
        turns=turns,
        retry=RetryPolicy(first_delay_s=0.01),
    )


def job_of(coordinator: Coordinator, config: dict[str, Any]) -> Job:
    task = coordinator.tasks[-1].model_copy(update={"config": config})
    return Job(task, {"input": None, "nodes": {}}, coordinator.report)


def token() -> str:
    return f"tok-{uuid.uuid4().hex[:12]}"


USAGE_300 = {"prompt_tokens": 250, "completion_tokens": 50, "total_tokens": 300}


def talking(turns: int, then_finish: bool = True) -> list[dict[str, Any]]:
    """``turns`` replies that call a tool the node does not have (the model is told so and
    goes on), 300 tokens each; then one that finishes."""
    replies: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "search", "arguments": {"q": "otters"}}], "usage": USAGE_300}
        for _ in range(turns)
    ]
    if then_finish:
        replies.append(
            {
                "tool_calls": [{"name": "finish", "arguments": {"output": "done"}}],
                "usage": USAGE_300,
            }
        )
    return replies


def budget(tokens: int = 1000, on_exceed: str = "fail", **kw: Any) -> AgentRunLimits:
    return AgentRunLimits(
        budget=Budget(tokens=tokens, on_exceed=on_exceed),  # type: ignore[arg-type]
        max_tokens=4096,
        **kw,
    )


# --- budgets: asked before each call --------------------------------------------------------


async def test_a_300_token_agent_stops_before_its_fourth_call_of_a_1000_token_budget(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, talking(5))
    coordinator = Coordinator(budget(1000))
    out = await handler(client, coordinator)(job_of(coordinator, {"prompt": f"{t} go"}))
    assert out is WAITING  # no report of its own: the coordinator failed the node
    assert len(await admin.requests(t)) == 3
    assert [e.payload.turn for e in coordinator.of(TurnRequested)] == [1, 2, 3, 4]
    assert [e.payload.turn for e in coordinator.of(TurnGranted)] == [1, 2, 3]
    assert [e.payload.usage.total_tokens for e in coordinator.of(ModelCalled)] == [300] * 3
    [exceeded] = coordinator.of(BudgetExceeded)
    assert exceeded.payload.reason.startswith("budget exceeded: 900 of 1000 tokens")
    [failed] = coordinator.of(NodeFailed)
    assert failed.payload.error == exceeded.payload.reason
    assert coordinator.run.status is RunStatus.FAILED


async def test_with_wait_the_node_waits_and_a_raise_lets_a_new_attempt_finish(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, talking(3))
    coordinator = Coordinator(budget(1000, on_exceed="wait"))
    agent = handler(client, coordinator)
    config = {"prompt": f"{t} go"}
    assert await agent(job_of(coordinator, config)) is WAITING
    assert coordinator.run.nodes["write"].status is NodeStatus.WAITING
    assert coordinator.run.status is RunStatus.WAITING

    coordinator.append(
        approval_submitted("run-1", "write", "approved", budget=BudgetRaise(tokens=2000))
    )
    assert coordinator.tasks[-1].attempt == 2
    out = await agent(job_of(coordinator, config))  # the new attempt starts afresh
    assert out["text"] == "done"
    assert out["turns"] == 1
    assert len(await admin.requests(t)) == 4
    granted = coordinator.of(TurnGranted)
    assert (granted[-1].payload.attempt, granted[-1].payload.spent.tokens) == (2, 900)


async def test_a_run_without_a_budget_asks_for_nothing(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, talking(3))
    coordinator = Coordinator(AgentRunLimits(max_tokens=4096))
    out = await handler(client, None)(job_of(coordinator, {"prompt": f"{t} go"}))
    assert out["turns"] == 4
    assert coordinator.of(TurnRequested) == []


async def test_a_worker_that_cannot_ask_fails_a_budgeted_node_before_any_call(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    coordinator = Coordinator(budget())
    with pytest.raises(NodeError, match="cannot ask for model calls"):
        await handler(client, None)(job_of(coordinator, {"prompt": "p"}))
    assert await admin.requests() == []


async def test_no_answer_in_time_fails_the_attempt_retryably(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    class Silent(Coordinator):
        async def wait(self, query: TurnQuery, /) -> TurnAnswer | None:
            return None

    coordinator = Silent(budget())
    with pytest.raises(NodeError, match="no answer to the request for model call 1") as e:
        await handler(client, coordinator)(job_of(coordinator, {"prompt": "p"}))
    assert e.value.retryable
    assert await admin.requests() == []


def test_what_answers_a_request_and_what_does_not() -> None:
    query = TurnQuery("run-1", "write", 2, 3, None, None, None, 10.0)

    def ev(kind: type[Event], **payload: Any) -> Event:
        return build_event(kind, payload, aggregate_id="run-1", actor=system_actor("c", "acme"))

    spent: dict[str, Any] = {}
    assert answers(ev(TurnGranted, node_id="write", attempt=2, turn=3, spent=spent), query)
    assert not answers(ev(TurnGranted, node_id="write", attempt=2, turn=2, spent=spent), query)
    assert not answers(ev(TurnGranted, node_id="other", attempt=2, turn=3, spent=spent), query)
    assert answers(ev(RunCancelRequested), query)
    assert answers(ev(RunFailed, reason="another node failed"), query)
    assert answers(ev(NodeFailed, node_id="write", attempt=2, error="timed out"), query)
    assert not answers(ev(NodeFailed, node_id="write", attempt=1, error="old"), query)
    newer = {"node_id": "write", "node_type": "agent", "task_topic": "t"}
    assert answers(ev(NodeScheduled, attempt=3, **newer), query)
    assert not answers(ev(NodeScheduled, attempt=2, **newer), query)


# --- max_tokens, allowed models, prices ----------------------------------------------------


async def test_max_tokens_is_sent_on_each_call_capped_by_the_tenant(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, talking(1))
    coordinator = Coordinator(AgentRunLimits(max_tokens=500))
    agent = handler(client, None)
    await agent(job_of(coordinator, {"prompt": f"{t} a", "max_tokens": 2000}))
    await agent(job_of(coordinator, {"prompt": f"{t} b", "max_tokens": 200}))
    await agent(job_of(coordinator, {"prompt": f"{t} c"}))
    sent = [r["body"].get("max_tokens") for r in await admin.requests(t)]
    assert sent == [500, 500, 200, 500]


async def test_a_task_without_limits_sends_the_nodes_own_max_tokens_only(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    coordinator = Coordinator(None)
    agent = handler(client, None)
    await agent(job_of(coordinator, {"prompt": f"{t} a"}))
    await agent(job_of(coordinator, {"prompt": f"{t} b", "max_tokens": 64}))
    assert [r["body"].get("max_tokens") for r in await admin.requests(t)] == [None, 64]


@pytest.mark.parametrize("value", [0, -1, "100", True, 1_000_001, 1.5])
async def test_a_bad_max_tokens_fails_before_any_call(
    value: Any, client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    coordinator = Coordinator(None)
    with pytest.raises(ConfigError, match="'max_tokens' must be an integer"):
        await handler(client, None)(job_of(coordinator, {"prompt": "p", "max_tokens": value}))
    assert await admin.requests() == []


async def test_a_model_the_tenant_does_not_allow_fails_the_node_before_any_call(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    coordinator = Coordinator(AgentRunLimits(max_tokens=100, allowed_models=("gpt-4o",)))
    agent = handler(client, None)
    with pytest.raises(ConfigError) as e:
        await agent(job_of(coordinator, {"prompt": "p", "model": "o3"}))
    assert str(e.value) == (
        "node 'write' names model 'o3', which the tenant does not allow (allowed: gpt-4o)"
    )
    with pytest.raises(ConfigError, match="'gpt-4o-mini'"):  # the worker's default, unnamed
        await agent(job_of(coordinator, {"prompt": "p"}))
    assert await admin.requests() == []


async def test_each_call_is_priced_with_the_tenants_prices_first(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    t = token()
    await admin.add_script(t, talking(1))
    prices = {"gpt-4o-mini": Price(input_per_million=1000, output_per_million=2000)}
    coordinator = Coordinator(AgentRunLimits(max_tokens=100, prices=prices))
    await handler(client, None)(job_of(coordinator, {"prompt": f"{t} go"}))
    costs = [e.payload.cost_usd for e in coordinator.of(ModelCalled)]
    assert costs == [pytest.approx((250 * 1000 + 50 * 2000) / 1e6)] * 2
    await admin.add_script(t, talking(0))
    coordinator = Coordinator(AgentRunLimits(max_tokens=100))
    await handler(client, None)(job_of(coordinator, {"prompt": f"{t} go"}))
    [call] = coordinator.of(ModelCalled)
    assert call.payload.cost_usd == pytest.approx((250 * 0.15 + 50 * 0.60) / 1e6)


async def test_a_budget_in_dollars_needs_a_price_for_the_model(
    client: AsyncOpenAI, admin: ScriptedLLMClient
) -> None:
    limits = AgentRunLimits(budget=Budget(usd=1), max_tokens=100)
    coordinator = Coordinator(limits)
    with pytest.raises(ConfigError, match="has no price, and the run's budget is in US dollars"):
        await handler(client, coordinator)(
            job_of(coordinator, {"prompt": "p", "model": "house-model"})
        )
    assert await admin.requests() == []


# --- reading the answer from the run's partition ------------------------------------------


class Partition:
    """A run's partition as ``KafkaTurnAnswers`` reads it: records at offsets, some of them
    stamped ``at`` a time."""

    def __init__(self, events: list[Event], since_offset: int | None = None) -> None:
        self.records = []
        for offset, event in enumerate(events):
            key, value, headers = encode_event(event)
            self.records.append(
                SimpleNamespace(key=key, value=value, headers=headers, offset=offset)
            )
        self.since_offset = since_offset
        self.started_at: int | None = None

    async def beginning(self) -> int:
        return 0

    async def offset_since(self, when: Any) -> int | None:
        return self.since_offset

    async def records_from(self, start: int) -> AsyncIterator[Any]:
        self.started_at = start
        for record in self.records[start:]:
            yield record


def query(**kw: Any) -> TurnQuery:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "node_id": "write",
        "attempt": 1,
        "turn": 2,
        "asked": None,
        "since": None,
        "after": None,
        "timeout_s": 5.0,
    }
    return TurnQuery(**{**fields, **kw})


async def scan(partition: Partition, q: TurnQuery) -> TurnAnswer | None:
    reader = KafkaTurnAnswers("unused:9092", TOPIC)
    run = SimpleNamespace(
        beginning=partition.beginning,
        offset_since=partition.offset_since,
        records=partition.records_from,
    )
    return await reader._scan(run, q)  # type: ignore[arg-type]


async def test_the_reader_finds_the_answer_after_others_and_starts_where_it_should() -> None:
    coordinator = Coordinator(budget(1000))
    task = coordinator.tasks[-1]
    coordinator.append(started(task))
    for turn in (1, 2):
        coordinator.append(turn_requested(task, turn))
        coordinator.append(model_called(task, turn, 300))
    log = coordinator.log
    granted_2 = next(
        i for i, e in enumerate(log) if isinstance(e, TurnGranted) and e.payload.turn == 2
    )
    partition = Partition(log, since_offset=1)
    answer = await scan(partition, query(since=EPOCH))
    assert answer is not None and answer.offset == granted_2
    assert partition.started_at == 1  # from a little before the task was scheduled
    answer = await scan(partition, query(after=3))
    assert answer is not None and answer.offset == granted_2
    assert partition.started_at == 4  # after the previous answer
    await scan(partition, query(asked=Position(TOPIC, 0, 2), since=EPOCH))
    assert partition.started_at == 1  # the earlier of the two
    await scan(partition, query(turn=9))  # no answer yet: read to the end
    assert partition.started_at == 0  # nothing known: from the beginning
