"""``aob.testing.attempt``: a node's code run in a user's test, through the runtime's executor,
without a stack: its output (inline or from the in-memory CAS), its failure and whether it
is retryable, its progress reports, and the secrets its config names (masked in what it
reports)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from aob import Job, NonRetryable, node
from aob.testing import attempt


class Greeting(BaseModel):
    name: str
    token: str = ""


@node("greet", config=Greeting)
async def greet(job: Job[Greeting]) -> dict[str, Any]:
    if job.config.name == "nobody":
        raise NonRetryable("nobody to greet")
    await job.progress("greeting", 0.5)
    upstream = job.nodes.get("fetch") or {}
    return {"text": f"hi {job.config.name}{upstream.get('suffix', '')}", "token": job.config.token}


async def test_an_attempt_gives_the_output_and_the_progress() -> None:
    result = await attempt(
        greet,
        {"name": "{{ input.who }}"},
        input={"who": "Ada"},
        nodes={"fetch": {"suffix": "!"}},
    )
    assert result.succeeded
    assert result.output == {"text": "hi Ada!", "token": ""}
    assert result.progress == [("greeting", 0.5)]
    assert result.error is None and result.retryable is None


async def test_an_attempt_gives_the_failure_as_the_run_would_record_it() -> None:
    result = await attempt(greet, {"name": "nobody"}, node_id="hello")
    assert not result.succeeded and result.output is None
    assert result.error == "node 'hello' (greet, attempt 1): nobody to greet"
    assert result.retryable is False
    refused = await attempt(greet, {})
    assert refused.error is not None and "name: Field required" in refused.error


async def test_secrets_are_given_and_masked_in_what_the_attempt_reports() -> None:
    seen: list[str] = []

    @node("peek", config=Greeting)
    async def peek(job: Job[Greeting]) -> Any:
        seen.append(job.config.token)
        return {"token": job.config.token}

    config = {"name": "Ada", "token": "{{ secrets.TOKEN }}"}
    result = await attempt(peek, config, secrets={"TOKEN": "s3cr3t-value"})
    assert seen == ["s3cr3t-value"]
    assert result.output == {"token": "[secret:TOKEN]"}
    missing = await attempt(peek, {"name": "Ada", "token": "{{ secrets.NOPE }}"})
    assert missing.error is not None and "has no such secret" in missing.error
    assert not missing.retryable


async def test_a_large_output_comes_back_from_the_cas() -> None:
    @node("big")
    async def big(job: Job[Any]) -> Any:
        return {"text": "x" * 100_000}

    result = await attempt(big)
    assert result.output == {"text": "x" * 100_000}
    (done,) = [e for e in result.events if type(e).__name__ == "NodeSucceeded"]
    assert not done.payload.output_inline  # type: ignore[attr-defined]
