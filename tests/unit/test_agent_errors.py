"""Model error classification and Retry-After parsing: which failures are tried again, when."""

from __future__ import annotations

import email.utils
import random

import httpx
import openai
import pytest

from workers.agent.calls import RetryPolicy, backoff, call_model
from workers.agent.model_errors import classify, retry_after
from workers.errors import NodeError


def status_error(
    status: int, message: str = "boom", headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    body = {"error": {"message": message, "type": "x", "code": None}}
    response = httpx.Response(status, headers=headers or {}, json=body, request=request)
    client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1/v1")
    return client._make_status_error(f"Error code: {status}", body=body, response=response)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retryable(status: int) -> None:
    failure = classify(status_error(status), "m")
    assert failure is not None and failure.retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_statuses_fail_with_the_models_message(status: int) -> None:
    failure = classify(status_error(status, "the messages are too long"), "gpt-x")
    assert failure is not None and not failure.retryable
    assert (
        failure.message == f"model gpt-x refused the request ({status}): the messages are too long"
    )


def test_connection_errors_and_timeouts_are_retryable() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    for exc in (openai.APIConnectionError(request=request), openai.APITimeoutError(request)):
        failure = classify(exc, "m")
        assert failure is not None and failure.retryable


def test_x_should_retry_overrides_the_status() -> None:
    failure = classify(status_error(400, headers={"x-should-retry": "true"}), "m")
    assert failure is not None and failure.retryable
    failure = classify(status_error(503, headers={"x-should-retry": "false"}), "m")
    assert failure is not None and not failure.retryable


def test_a_bug_is_not_a_model_failure() -> None:
    assert classify(KeyError("x"), "m") is None


def test_retry_after_seconds_ms_and_date() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "0.25"}) == 0.25
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "-3"}) == 0.0
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after({"retry-after": date}, now=now) == pytest.approx(7.0)
    assert retry_after({"retry-after": email.utils.formatdate(now - 60, usegmt=True)}, now) == 0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_a_429_carries_its_retry_after() -> None:
    failure = classify(status_error(429, headers={"retry-after": "3"}), "m")
    assert failure is not None and failure.retry_after_s == 3.0


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(first_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)
    for tries, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delay = backoff(tries, policy, rng)
        assert ceiling / 2 <= delay <= ceiling


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_call_model_waits_as_asked_then_succeeds() -> None:
    clock = Clock()
    answers = [status_error(429, headers={"retry-after": "2"}), status_error(503), "ok"]

    async def call(timeout: float) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = await call_model(
        call, model="m", deadline=60, policy=RetryPolicy(), clock=clock, sleep=clock.sleep
    )
    assert result == "ok"
    assert clock.slept[0] == 2.0 and len(clock.slept) == 2


async def test_call_model_does_not_retry_a_400() -> None:
    clock = Clock()
    calls = 0

    async def call(timeout: float) -> str:
        nonlocal calls
        calls += 1
        raise status_error(400, "bad tool schema")

    with pytest.raises(NodeError) as caught:
        await call_model(
            call, model="m", deadline=60, policy=RetryPolicy(), clock=clock, sleep=clock.sleep
        )
    assert calls == 1 and not caught.value.retryable
    assert "bad tool schema" in str(caught.value)


async def test_call_model_gives_up_after_max_tries_retryably() -> None:
    clock = Clock()
    calls = 0

    async def call(timeout: float) -> str:
        nonlocal calls
        calls += 1
        raise status_error(500, "overloaded")

    with pytest.raises(NodeError) as caught:
        await call_model(
            call,
            model="m",
            deadline=600,
            policy=RetryPolicy(max_tries=3),
            clock=clock,
            sleep=clock.sleep,
        )
    assert calls == 3 and caught.value.retryable
    assert "overloaded" in str(caught.value) and "3 tries" in str(caught.value)


async def test_call_model_never_waits_past_the_deadline() -> None:
    clock = Clock()

    async def call(timeout: float) -> str:
        raise status_error(429, headers={"retry-after": "20"})

    with pytest.raises(NodeError) as caught:
        await call_model(
            call, model="m", deadline=10, policy=RetryPolicy(), clock=clock, sleep=clock.sleep
        )
    assert caught.value.retryable and clock.slept == []
    assert "no time left" in str(caught.value)
