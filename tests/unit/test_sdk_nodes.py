"""The worker SDK's ``@node``: what a declared function gets (``Job``), how its config is
rendered and validated, how its failures and outputs reach the run, exactly as the built-in
handlers' do (every attempt here goes through the runtime's ``TaskExecutor`` against an
in-memory log)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from aob import Job, NodeDefinition, NonRetryable, Retryable, node
from schemas.events import NodeFailed, NodeProgress, NodeSucceeded
from schemas.tasks import NodeContext, NodeTask
from tests.worker_support import RunLog
from workers.errors import NodeError
from workers.execute import TaskExecutor
from workers.handlers import HANDLERS
from workers.handlers.base import Job as Attempt


class ShoutConfig(BaseModel):
    text: str
    times: int = Field(1, ge=1, le=5)


class ShoutOutput(BaseModel):
    text: str


class Blobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        ref = f"cas://sha256:{len(self.blobs):064x}"
        self.blobs[ref] = data
        return ref

    async def get_json(self, ref: str) -> Any:
        raise AssertionError("no upstream output is read from the CAS here")


def task(
    config: dict[str, Any] | None = None,
    node_type: str = "shout",
    **kw: Any,
) -> NodeTask:
    fields: dict[str, Any] = {
        "task_id": "task-1",
        "run_id": "run-1",
        "tenant": "acme",
        "node_id": "loud",
        "node_type": node_type,
        "attempt": 2,
        "config": config if config is not None else {"text": "hi"},
        "input": {"who": "Ada"},
        "nodes": {"fetch": NodeContext(status="SUCCEEDED", output={"name": "Bob"})},
    }
    fields.update(kw)
    return NodeTask(**fields)


async def attempt(definition: NodeDefinition, t: NodeTask, store: Blobs | None = None) -> RunLog:
    """Run ``t`` through the runtime's executor with ``definition`` as its type's handler."""
    log = RunLog()
    executor = TaskExecutor(
        events=log,
        store=store or Blobs(),
        handlers={definition.name: definition},
        worker_name="test",
        max_backoff_s=0.001,
    )
    await executor.run(t)
    return log


def outcome(log: RunLog) -> NodeSucceeded | NodeFailed:
    (last,) = [e for e in log.events if isinstance(e, NodeSucceeded | NodeFailed)]
    return last


@node("shout", config=ShoutConfig, output=ShoutOutput, description="Shouts its text.")
async def shout(job: Job[ShoutConfig]) -> ShoutOutput:
    return ShoutOutput(text=(job.config.text.upper() + "!") * job.config.times)


# --- declaring ---------------------------------------------------------------------------


def test_a_declared_node_carries_its_name_schemas_and_description() -> None:
    assert isinstance(shout, NodeDefinition)
    assert shout.name == "shout"
    assert shout.description == "Shouts its text."
    assert shout.config_schema == ShoutConfig.model_json_schema()
    assert shout.config_schema["required"] == ["text"]
    assert shout.output_schema == ShoutOutput.model_json_schema()


def test_without_models_the_schemas_say_anything_and_the_docstring_describes() -> None:
    @node("plain")
    async def plain(job: Job[Any]) -> Any:
        """Does plain things.

        Details nobody needs in a palette."""
        return None

    assert plain.config_schema == {}
    assert plain.output_schema is None
    assert plain.description == "Does plain things."


@pytest.mark.parametrize("name", ["Shout", "1shout", "", "shout!", "a" * 49, "sh out"])
def test_a_name_the_registry_would_refuse_is_refused_at_once(name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        node(name)


def test_only_async_functions_and_pydantic_models_are_taken() -> None:
    def sync(job: Any) -> Any:
        return None

    with pytest.raises(TypeError, match="not an async function"):
        node("sync")(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a pydantic model class"):
        node("bad", config=dict)  # type: ignore[arg-type]


# --- the job -----------------------------------------------------------------------------


async def test_the_job_holds_the_task_its_rendered_config_and_upstream_outputs() -> None:
    seen: dict[str, Any] = {}

    @node("look")
    async def look(job: Job[Any]) -> dict[str, Any]:
        seen.update(
            config=job.config,
            input=job.input,
            nodes=job.nodes,
            run_id=job.run_id,
            node_id=job.node_id,
            node_type=job.node_type,
            attempt=job.attempt,
            idempotency_key=job.idempotency_key,
            tenant=job.tenant,
        )
        return {}

    config = {"greeting": "hi {{ input.who }} and {{ nodes.fetch.output.name }}", "n": 3}
    log = await attempt(look, task(config, node_type="look"))
    assert isinstance(outcome(log), NodeSucceeded)
    assert seen == {
        "config": {"greeting": "hi Ada and Bob", "n": 3},
        "input": {"who": "Ada"},
        "nodes": {"fetch": {"name": "Bob"}},
        "run_id": "run-1",
        "node_id": "loud",
        "node_type": "look",
        "attempt": 2,
        "idempotency_key": "run-1/loud/2",
        "tenant": "acme",
    }


async def test_a_validated_config_is_the_model_and_a_model_output_is_its_json() -> None:
    log = await attempt(shout, task({"text": "{{ input.who }}", "times": "{{ 1 + 1 }}"}))
    done = outcome(log)
    assert isinstance(done, NodeSucceeded)
    assert done.payload.output == {"text": "ADA!ADA!"}
    assert done.payload.output_inline


async def test_a_config_the_model_refuses_fails_the_node_with_pydantics_words() -> None:
    log = await attempt(shout, task({"times": 9}))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert not failed.payload.retryable
    assert failed.payload.error == (
        "node 'loud' (shout, attempt 2): config is not a valid ShoutConfig: "
        "text: Field required; times: Input should be less than or equal to 5"
    )


async def test_a_template_error_in_the_config_fails_the_node_without_retry() -> None:
    log = await attempt(shout, task({"text": "{{ input.nope.deeper }}"}))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert not failed.payload.retryable
    assert "template error" in failed.payload.error


async def test_a_config_that_is_not_rendered_is_handed_over_as_written() -> None:
    @node("raw", render_config=False)
    async def raw(job: Job[Any]) -> Any:
        return job.config

    log = await attempt(raw, task({"expr": "{{ input.who }}"}, node_type="raw"))
    done = outcome(log)
    assert isinstance(done, NodeSucceeded)
    assert done.payload.output == {"expr": "{{ input.who }}"}


async def test_an_output_the_output_model_refuses_fails_the_node_without_retry() -> None:
    @node("liar", output=ShoutOutput)
    async def liar(job: Job[Any]) -> Any:
        return {"txt": "typo"}

    log = await attempt(liar, task(node_type="liar"))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert not failed.payload.retryable
    assert "output is not a valid ShoutOutput: text: Field required" in failed.payload.error


async def test_a_large_output_goes_to_the_cas_as_for_every_node() -> None:
    @node("big")
    async def big(job: Job[Any]) -> Any:
        return {"text": "x" * 100_000}

    store = Blobs()
    log = await attempt(big, task(node_type="big"), store)
    done = outcome(log)
    assert isinstance(done, NodeSucceeded)
    assert not done.payload.output_inline
    assert done.payload.output_ref in store.blobs


# --- failures ----------------------------------------------------------------------------


def failing(exc: BaseException) -> NodeDefinition:
    @node("fails")
    async def fails(job: Job[Any]) -> Any:
        raise exc

    return fails


@pytest.mark.parametrize(
    ("exc", "retryable", "words"),
    [
        (NonRetryable("customer 7 does not exist"), False, "customer 7 does not exist"),
        (Retryable("billing answered 503"), True, "billing answered 503"),
        (KeyError("id"), True, "unexpected KeyError: 'id'"),
        (TimeoutError(), True, "timed out after"),
    ],
)
async def test_failures_are_classed_by_exception_type(
    exc: BaseException, retryable: bool, words: str
) -> None:
    log = await attempt(failing(exc), task(node_type="fails"))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert failed.payload.retryable is retryable
    assert failed.payload.error.startswith("node 'loud' (fails, attempt 2): ")
    assert words in failed.payload.error


def test_the_sdks_failures_are_the_runtimes_node_errors() -> None:
    assert isinstance(NonRetryable("x"), NodeError)
    assert not NonRetryable("x").retryable
    assert isinstance(Retryable("x"), NodeError)
    assert Retryable("x").retryable


async def test_the_attempts_time_limit_applies() -> None:
    import asyncio

    @node("slow")
    async def slow(job: Job[Any]) -> Any:
        await asyncio.sleep(60)

    log = await attempt(slow, task(node_type="slow", timeout_s=0.05))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert failed.payload.retryable
    assert "timed out after 0.05s" in failed.payload.error


# --- progress ----------------------------------------------------------------------------


async def test_progress_reports_are_events_with_ids_stable_across_deliveries() -> None:
    @node("steps")
    async def steps(job: Job[Any]) -> Any:
        await job.progress("fetched 1 of 2", 0.5)
        await job.progress("fetched 2 of 2", 1)
        return {}

    first = await attempt(steps, task(node_type="steps"))
    again = await attempt(steps, task(node_type="steps"))  # a worker that restarted
    reports = [e for e in first.events if isinstance(e, NodeProgress)]
    assert [(r.payload.seq, r.payload.message, r.payload.fraction) for r in reports] == [
        (1, "fetched 1 of 2", 0.5),
        (2, "fetched 2 of 2", 1.0),
    ]
    assert all(r.aggregate_id == "run-1" and r.payload.attempt == 2 for r in reports)
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "half"])
async def test_a_fraction_outside_zero_to_one_is_a_bug_in_the_node(fraction: Any) -> None:
    @node("steps")
    async def steps(job: Job[Any]) -> Any:
        await job.progress("half way", fraction)

    log = await attempt(steps, task(node_type="steps"))
    failed = outcome(log)
    assert isinstance(failed, NodeFailed)
    assert "progress fraction must be between 0 and 1" in failed.payload.error
    assert not [e for e in log.events if isinstance(e, NodeProgress)]


# --- the built-in types are declared the same way -----------------------------------------


def test_the_simple_built_ins_are_sdk_nodes_that_render_their_own_templates() -> None:
    for name in ("noop", "transform", "condition", "hitl"):
        handler = HANDLERS[name]
        assert isinstance(handler, NodeDefinition), name
        assert handler.name == name
        assert not handler.render_config
        assert handler.description


async def test_a_built_in_called_as_a_handler_takes_the_runtimes_attempt() -> None:
    t = task({"output": {"hi": "{{ input.who }}"}}, node_type="transform")
    job = Attempt(t, {"input": t.input, "nodes": {}})
    assert await HANDLERS["transform"](job) == {"hi": "Ada"}
