"""Secrets in the worker: read only when a config names them, rendered into templates, and
masked in everything the attempt reports (output, CAS blob, reasons, an agent's events,
log lines). The store is a fake; the log encodes every event as the bus does, and the
tests look for the value in those bytes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import quote

import pytest
from openai import AsyncOpenAI

from infra.scripted_llm.client import ScriptedLLMClient
from infra.scripted_llm.serve import Running
from schemas.codec import encode_event
from schemas.envelope import deterministic_id
from schemas.events import ApprovalRequested, ModelCalled, NodeFailed, NodeSucceeded
from schemas.tasks import NodeTask
from secret_store import SecretNotFound
from tests.worker_support import RunLog
from workers.agent.calls import RetryPolicy
from workers.agent.handler import AgentHandler
from workers.errors import NodeError, TaskCrashed
from workers.execute import TaskExecutor
from workers.handlers import HANDLERS
from workers.handlers.base import Job
from workers.redaction import MaskingFilter, Redactor
from workers.secret_values import CachedSecrets

VALUE = 'sk-live-7Qx"9/zz secret'  # a quote and a slash: JSON and URLs spell it otherwise


class Secrets:
    """A tenant's store in memory, counting what is asked of it."""

    def __init__(self, values: dict[str, dict[str, str]]) -> None:
        self._values = values
        self.asked: list[tuple[str, list[str]]] = []

    async def values(self, tenant: str, names: Iterable[str]) -> dict[str, str]:
        wanted = list(names)
        self.asked.append((tenant, wanted))
        have = self._values.get(tenant, {})
        missing = [n for n in wanted if n not in have]
        if missing:
            raise SecretNotFound(tenant, missing)
        return {n: have[n] for n in wanted}


class Blobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put_bytes(self, data: bytes, content_type: str = "") -> str:
        ref = f"cas://sha256:{len(self.blobs):064x}"
        self.blobs[ref] = data
        return ref

    async def get_json(self, ref: str) -> Any:
        raise AssertionError("no upstream output is read here")


def task(config: dict[str, Any], node_type: str = "fetch", tenant: str = "acme") -> NodeTask:
    return NodeTask(
        task_id="task-1",
        run_id="run-1",
        tenant=tenant,
        node_id="n",
        node_type=node_type,
        attempt=1,
        config=config,
        timeout_s=30,
        input={"topic": "otters"},
    )


def executor(
    handlers: dict[str, Any], log: RunLog, secrets: Any, store: Blobs | None = None
) -> TaskExecutor:
    return TaskExecutor(
        events=log,
        store=store or Blobs(),
        handlers={"transform": HANDLERS["transform"], **handlers},
        worker_name="test",
        max_backoff_s=0.001,
        secrets=secrets,
    )


def nothing_holds_the_value(log: RunLog, *more: bytes) -> None:
    for event in log.events:
        _, value, _ = encode_event(event)
        for spelled in (VALUE, quote(VALUE, safe=""), VALUE.replace('"', '\\"')):
            assert spelled.encode() not in value, event.type
    for blob in more:
        assert VALUE.encode() not in blob


STORE = {"acme": {"API_KEY": VALUE, "OTHER": "x-other-value"}}


async def test_a_template_reads_a_secret_and_the_output_is_masked() -> None:
    log = RunLog()
    source = Secrets(STORE)
    config = {"output": {"auth": "Bearer {{ secrets.API_KEY }}", "n": "{{ input.topic }}"}}
    await executor({}, log, source).run(task(config, "transform"))
    [done] = log.outcomes
    assert isinstance(done, NodeSucceeded)
    assert done.payload.output == {"auth": "Bearer [secret:API_KEY]", "n": "otters"}
    assert source.asked == [("acme", ["API_KEY"])]  # only what the config names
    nothing_holds_the_value(log)


async def test_every_spelling_in_keys_and_depth_is_masked_and_the_cas_never_holds_it() -> None:
    log = RunLog()
    blobs = Blobs()
    large = "x" * 300_000  # past the inline limit: the output goes to the CAS

    async def echo(job: Job) -> Any:
        value = job.secrets["API_KEY"]
        return {
            value: [{"deep": f"a{value}b"}],
            "json": '{"k": "' + value.replace('"', '\\"') + '"}',
            "url": "https://x.test/?k=" + quote(value, safe=""),
            "large": large,
        }

    await executor({"fetch": echo}, log, Secrets(STORE), blobs).run(
        task({"note": "{{ secrets.API_KEY }}"})
    )
    [done] = log.outcomes
    assert isinstance(done, NodeSucceeded) and done.payload.output_ref
    [blob] = blobs.blobs.values()
    assert b"[secret:API_KEY]" in blob
    assert b'"[secret:API_KEY]":[{"deep":"a[secret:API_KEY]b"}]' in blob
    assert b"k=[secret:API_KEY]" in blob
    nothing_holds_the_value(log, blob, blob.replace(b'\\"', b'"'))


async def test_a_failure_that_quotes_the_secret_is_masked() -> None:
    log = RunLog()

    async def quoting(job: Job) -> Any:
        raise NodeError(f"the target said: bad key {job.secrets['API_KEY']}", retryable=True)

    await executor({"fetch": quoting}, log, Secrets(STORE)).run(
        task({"k": "{{ secrets.API_KEY }}"})
    )
    [failed] = log.outcomes
    assert isinstance(failed, NodeFailed) and failed.payload.retryable
    assert "bad key [secret:API_KEY]" in failed.payload.error
    nothing_holds_the_value(log)


async def test_a_crash_is_masked_in_the_reason_and_the_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RunLog()

    class QuotingBlobs(Blobs):
        """A bug in the worker that quotes a value it met (here: the secret itself)."""

        async def put_bytes(self, data: bytes, content_type: str = "") -> str:
            raise RuntimeError(f"bug near {VALUE}")

    async def large(job: Job) -> Any:
        return "x" * 300_000  # past the inline limit: written to the CAS, which fails

    caplog.set_level(logging.DEBUG)
    with pytest.raises(TaskCrashed) as crashed:
        await executor({"fetch": large}, log, Secrets(STORE), QuotingBlobs()).run(
            task({"k": "{{ secrets.API_KEY }}"})
        )
    assert "[secret:API_KEY]" in crashed.value.reason and VALUE not in crashed.value.reason
    assert "bug near [secret:API_KEY]" in caplog.text and VALUE not in caplog.text
    [failed] = log.outcomes
    assert isinstance(failed, NodeFailed)
    nothing_holds_the_value(log)


async def test_what_any_module_logs_during_the_attempt_is_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RunLog()

    async def chatty(job: Job) -> Any:
        logging.getLogger("workers.agent.calls").info("the provider said: %s", VALUE)
        try:
            raise ValueError(VALUE)
        except ValueError:
            logging.getLogger("workers.http").exception("while calling")
        return "ok"

    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(MaskingFilter())
    await executor({"fetch": chatty}, log, Secrets(STORE)).run(task({"k": "{{ secrets.API_KEY }}"}))
    logging.getLogger("workers").info("after the attempt: %s", VALUE)  # no longer masked
    assert "the provider said: [secret:API_KEY]" in caplog.text
    assert "ValueError: [secret:API_KEY]" in caplog.text
    assert caplog.text.count(VALUE) == 1 and f"after the attempt: {VALUE}" in caplog.text


async def test_an_unknown_secret_fails_the_node_for_good_naming_it() -> None:
    log = RunLog()
    ran: list[Job] = []

    async def fetch(job: Job) -> Any:
        ran.append(job)

    config = {"a": "{{ secrets.API_KEY }}", "b": "{{ secrets.MISSING }}"}
    await executor({"fetch": fetch}, log, Secrets(STORE)).run(task(config))
    [failed] = log.events
    assert isinstance(failed, NodeFailed) and not failed.payload.retryable
    assert "secrets.MISSING" in failed.payload.error and "'acme'" in failed.payload.error
    assert ran == []
    nothing_holds_the_value(log)


async def test_an_event_a_handler_appends_is_masked_too() -> None:
    log = RunLog()
    config = {"prompt": "Approve the call with key {{ secrets.API_KEY }}?"}
    await executor({"hitl": HANDLERS["hitl"]}, log, Secrets(STORE)).run(task(config, "hitl"))
    [asked] = [e for e in log.events if isinstance(e, ApprovalRequested)]
    assert asked.payload.prompt == "Approve the call with key [secret:API_KEY]?"
    assert asked.event_id == deterministic_id("task-1", "approval_requested")
    nothing_holds_the_value(log)


async def test_another_tenants_secret_is_unknown() -> None:
    log = RunLog()
    await executor({}, log, Secrets(STORE)).run(
        task({"output": "{{ secrets.API_KEY }}"}, "transform", tenant="globex")
    )
    [failed] = log.events
    assert isinstance(failed, NodeFailed) and "secrets.API_KEY" in failed.payload.error


async def test_a_config_without_secrets_never_asks_the_store() -> None:
    log = RunLog()
    source = Secrets(STORE)
    await executor({}, log, source).run(
        task({"output": "keep secrets safe: {{ input.topic }}"}, "transform")
    )
    assert source.asked == []
    assert isinstance(log.outcomes[0], NodeSucceeded)


async def test_the_store_is_asked_again_only_after_the_ttl() -> None:
    now = [0.0]
    source = Secrets(STORE)
    cached = CachedSecrets(source, ttl_s=5, clock=lambda: now[0])
    assert await cached.values("acme", ["API_KEY"]) == {"API_KEY": VALUE}
    now[0] = 4.9
    await cached.values("acme", ["API_KEY"])
    assert len(source.asked) == 1
    now[0] = 5.1
    await cached.values("acme", ["API_KEY"])
    assert len(source.asked) == 2
    with pytest.raises(SecretNotFound):
        await cached.values("globex", ["API_KEY"])  # cached per tenant


def test_the_longer_secret_is_masked_whole_and_events_keep_their_id() -> None:
    redactor = Redactor({"SHORT": "abc", "LONG": "xxabcxx"})
    assert redactor.text("xxabcxx and abc") == "[secret:LONG] and [secret:SHORT]"
    assert not Redactor({})
    assert Redactor({}).value({"k": "abc"}) == {"k": "abc"}


# --- the agent: the prompt goes to the model, never into an event ----------------------


@pytest.fixture
async def agent(scripted: Running) -> AsyncIterator[AgentHandler]:
    class NoVerdicts:
        async def wait(self, query: Any, /) -> Any:
            raise AssertionError("no patch here")

    async with AsyncOpenAI(base_url=scripted.base_url, api_key="test", max_retries=0) as client:
        yield AgentHandler(
            client,
            default_model="test-model",
            verdicts=NoVerdicts(),
            retry=RetryPolicy(first_delay_s=0.01),
        )


async def test_an_agent_gets_the_secret_in_its_prompt_and_no_event_keeps_it(
    agent: AgentHandler, admin: ScriptedLLMClient
) -> None:
    mark = "mark-secret-agent-1"
    # The model repeats the secret in its answer, as a prompt-injected one would.
    await admin.add_script(
        mark,
        [{"tool_calls": [{"name": "finish", "arguments": {"output": f"the key is {VALUE}"}}]}],
    )
    log = RunLog()
    config = {"prompt": f"{mark}: call the API with {{{{ secrets.API_KEY }}}}"}
    await executor({"agent": agent}, log, Secrets(STORE)).run(task(config, "agent"))

    [request] = await admin.requests(mark)
    user = request["body"]["messages"][1]["content"]
    assert user.startswith(f"{mark}: call the API with {VALUE}")  # the model needs it
    assert user.count(VALUE) == 1  # the run context shown to the model holds no secrets
    assert '"secrets"' not in user
    [done] = log.outcomes
    assert isinstance(done, NodeSucceeded)
    assert done.payload.output["text"] == "the key is [secret:API_KEY]"
    assert any(isinstance(e, ModelCalled) for e in log.events)
    nothing_holds_the_value(log)
