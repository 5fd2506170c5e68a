"""The agent handler: a bounded loop of model calls with tools.

Each turn calls the model with the conversation so far and records a ``run.model_called``
event with its token usage. ``finish(output)`` ends the node with that output; a plain answer
without tool calls ends it with the answer's text; other tool calls are answered and the model
goes on. ``patch_workflow`` is answered with the coordinator's verdict on the patch
(``workers.agent.patching``), which may take a while: the model waits, within the attempt's
time. A model still talking after ``max_turns`` calls fails the node.

Limits (the task's ``agent_limits``, the tenant's when the run was submitted): each call asks
for at most ``max_tokens`` (``AgentConfig.max_tokens_for``); a model the tenant does not allow
fails the node before any call, as the command API refused it already if the workflow named
it. Each call is priced (``limits.budgets``: the tenant's prices, then the built-in table)
and its cost recorded with its usage. In a run with a budget, each call is asked for first
(``workers.agent.turns``); refused, the attempt stops without a report, the coordinator
having decided the node's fate. A budget in dollars needs a price for the model.

The node's output::

    {"text": str,          # finish's output if a string, else its JSON; or the plain answer
     "output": <any>,      # only when finish was given a non-string value: that value
     "usage": {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"},
                           # summed over this attempt's model calls
     "model": str,         # the model asked
     "turns": int}         # model calls made
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from typing import Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from limits.budgets import call_cost, price_of
from schemas.budgets import AgentRunLimits, Price, model_refusal
from schemas.events import ModelCalled, ModelCalledPayload, TokenUsage
from schemas.reports import report
from schemas.values import writable
from schemas.workflow import DEFAULT_TIMEOUT_S
from templating import renders
from workers.agent.calls import RetryPolicy, call_model
from workers.agent.config import AgentConfig, parse_config
from workers.agent.patching import Patcher
from workers.agent.prompt import RunDefinition, first_messages
from workers.agent.toolbox import ToolServices, open_toolbox
from workers.agent.tools import PATCH_WORKFLOW, answer, definitions
from workers.agent.turns import TurnAnswers, TurnGate
from workers.agent.verdicts import VerdictSource
from workers.errors import ConfigError, NodeError
from workers.handlers.base import WAITING, Job

# Tool names are short (OpenAI allows 64 characters); a longer one is the model's invention.
MAX_NAME_CHARS = 100


class AgentHandler:
    """The ``agent`` node type, speaking to whatever server ``client`` points at, learning
    the fate of its patches from ``verdicts`` and, in a run with a budget, whether it may
    make each model call from ``turns``."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        default_model: str,
        verdicts: VerdictSource,
        turns: TurnAnswers | None = None,
        retry: RetryPolicy | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        tools: ToolServices | None = None,
    ) -> None:
        self._client = client
        self._tool_services = tools or ToolServices()
        self._verdicts = verdicts
        self._turns = turns
        self._default_model = default_model
        self._retry = retry or RetryPolicy()
        self._default_timeout_s = default_timeout_s

    async def __call__(self, job: Job) -> Any:
        config = parse_config(job.config, self._default_model)
        limits = job.task.agent_limits
        price = checked_price(job.task.node_id, config, limits)
        max_tokens = config.max_tokens_for(limits)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (job.task.timeout_s or self._default_timeout_s)
        gate = None
        if limits is not None and limits.budget is not None:
            if self._turns is None:
                raise NodeError("this worker cannot ask for model calls in a run with a budget")
            gate = TurnGate(job, self._turns, deadline=deadline, clock=loop.time)
        prompt = await renders.render_string(config.prompt, job.template_context)
        patcher = Patcher(job, self._verdicts, deadline=deadline, clock=loop.time)
        run = None
        if PATCH_WORKFLOW in config.tools:
            run = RunDefinition(job.task.version, job.task.definition)
        messages = first_messages(config.system, prompt, job.context, run)
        async with AsyncExitStack() as stack:
            box = await open_toolbox(
                job,
                config.toolset,
                self._tool_services,
                stack,
                deadline=deadline,
                clock=loop.time,
            )
            tools = definitions(config.tools) + box.definitions
            allowed = (*config.tools, *box.names)
            usage = TokenUsage()

            # Sent only when set: a task of a run submitted before limits may have none.
            extra: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
            for turn in range(1, config.max_turns + 1):
                if gate is not None and not await gate.may_call(turn, config.model):
                    return WAITING  # refused: the coordinator failed the node, or it waits
                completion = await call_model(
                    lambda timeout: self._client.chat.completions.create(
                        model=config.model,
                        messages=messages,  # type: ignore[arg-type]  # plain dicts of that shape
                        tools=tools,  # type: ignore[arg-type]
                        timeout=timeout,
                        **extra,
                    ),
                    model=config.model,
                    deadline=deadline,
                    policy=self._retry,
                    clock=loop.time,
                )
                if not completion.choices:
                    raise NodeError(
                        f"model {config.model} answered with no choices", retryable=True
                    )
                call_usage = token_usage(completion)
                usage = add(usage, call_usage)
                choice = completion.choices[0]
                calls = choice.message.tool_calls or []
                called = ModelCalledPayload(
                    node_id=job.task.node_id,
                    attempt=job.task.attempt,
                    turn=turn,
                    model=config.model,
                    usage=call_usage,
                    finish_reason=model_word(choice.finish_reason)
                    if choice.finish_reason
                    else None,
                    tool_calls=[tool_name(c) for c in calls],
                    cost_usd=call_cost(call_usage, price) if price is not None else None,
                )
                await job.emit(report(ModelCalled, job.task, called, "model_called", str(turn)))
                if not calls:
                    return result(choice.message.content or "", usage, config, turn)

                messages.append(
                    {
                        "role": "assistant",
                        "content": choice.message.content,
                        "tool_calls": [
                            {
                                "id": c.id,
                                "type": "function",
                                "function": {
                                    "name": tool_name(c),
                                    "arguments": tool_arguments(c),
                                },
                            }
                            for c in calls
                        ],
                    }
                )
                for index, c in enumerate(calls):
                    name = tool_name(c)
                    if name in box.runners:
                        reply = await box.call(name, tool_arguments(c))
                        messages.append({"role": "tool", "tool_call_id": c.id, "content": reply})
                        continue
                    outcome = answer(name, tool_arguments(c), allowed)
                    if outcome.finished:
                        return result(outcome.output, usage, config, turn)
                    reply = outcome.reply
                    if outcome.patch is not None:
                        reply = await patcher.submit(outcome.patch, turn, index)
                    messages.append({"role": "tool", "tool_call_id": c.id, "content": reply})

        raise NodeError(
            f"agent did not finish within max_turns={config.max_turns} model calls",
            retryable=False,
        )


def checked_price(node_id: str, config: AgentConfig, limits: AgentRunLimits | None) -> Price | None:
    """The price of the node's model (None: it has none), once the model is known to be
    allowed; ConfigError if it is not, or if the run's budget is in dollars and the model
    has no price to count them with."""
    if limits is None:
        return price_of(config.model)
    refusal = model_refusal(node_id, config.model, limits.allowed_models)
    if refusal is not None:
        raise ConfigError(refusal)
    price = price_of(config.model, limits.prices)
    if price is None and limits.budget is not None and limits.budget.usd is not None:
        raise ConfigError(
            f"model {config.model!r} has no price, and the run's budget is in US dollars: "
            "give its price in the tenant's agents.prices"
        )
    return price


def model_word(text: str) -> str:
    """A name the model made (a tool's, a finish reason) as the events may carry it: a word,
    not a document, with no character that no value may hold (``schemas.values``)."""
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1] + "…"
    return writable(text)


def tool_name(call: Any) -> str:
    function = getattr(call, "function", None)
    return model_word(str(getattr(function, "name", None) or getattr(call, "type", "unknown")))


def tool_arguments(call: Any) -> str:
    function = getattr(call, "function", None)
    return str(getattr(function, "arguments", None) or "")


def token_usage(completion: ChatCompletion) -> TokenUsage:
    u = completion.usage
    if u is None:
        return TokenUsage()
    details = u.prompt_tokens_details
    cached = (details.cached_tokens if details is not None else None) or 0
    return TokenUsage(
        prompt_tokens=u.prompt_tokens or 0,
        completion_tokens=u.completion_tokens or 0,
        total_tokens=u.total_tokens or 0,
        cached_tokens=cached,
    )


def add(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        cached_tokens=a.cached_tokens + b.cached_tokens,
    )


def result(value: Any, usage: TokenUsage, config: AgentConfig, turns: int) -> dict[str, Any]:
    """The node's output (shape in the module doc)."""
    out: dict[str, Any] = {}
    if isinstance(value, str):
        out["text"] = value
    else:
        out["text"] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        out["output"] = value
    out.update(usage=usage.model_dump(), model=config.model, turns=turns)
    return out
