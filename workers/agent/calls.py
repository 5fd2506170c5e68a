"""The one retry layer around a model call (the SDK's own retries are off: ``max_retries=0``).

Transient failures are tried again, up to ``RetryPolicy.max_tries`` in all, after the delay the
server asked for or else an exponential backoff with jitter; never past the attempt's
deadline (the coordinator's retry policy takes over from there). A server asking for a longer
wait than the policy allows ends the attempt rather than being called back early.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from workers.agent.model_errors import classify
from workers.errors import NodeError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Below this much time left a model call is not worth starting.
MIN_CALL_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0


def backoff(tries: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with jitter: half to all of first_delay * 2**(tries-1), capped."""
    ceiling = min(policy.first_delay_s * 2 ** (tries - 1), policy.max_delay_s)
    return float(ceiling * rng.uniform(0.5, 1.0))


async def call_model(
    call: Callable[[float], Awaitable[T]],
    *,
    model: str,
    deadline: float,
    policy: RetryPolicy,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """``call(timeout_s)`` until it answers; NodeError when it cannot (see the module doc).

    ``deadline`` is on ``clock``'s scale (the event loop's time).
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    tries = 0
    while True:
        tries += 1
        remaining = deadline - clock()
        try:
            return await call(max(remaining, MIN_CALL_S))
        except Exception as exc:
            failure = classify(exc, model)
            if failure is None:
                raise
            if not failure.retryable:
                raise NodeError(failure.message, retryable=False) from exc
            if tries >= policy.max_tries:
                raise NodeError(
                    f"{failure.message} (gave up after {tries} tries)", retryable=True
                ) from exc
            delay = failure.retry_after_s
            if delay is None:
                delay = backoff(tries, policy, rng)
            elif delay > policy.max_delay_s:
                raise NodeError(
                    f"{failure.message} (asked to retry after {delay:g}s, more than "
                    f"{policy.max_delay_s:g}s)",
                    retryable=True,
                ) from exc
            if clock() + delay + MIN_CALL_S > deadline:
                raise NodeError(
                    f"{failure.message} (no time left in this attempt to retry)",
                    retryable=True,
                ) from exc
            log.info("%s; try %d again in %.2fs", failure.message, tries + 1, delay)
            await sleep(delay)
