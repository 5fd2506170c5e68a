"""The coordinator's clock: turns timers that are due into ``TimerFired`` events.

The decider is pure and never waits; what a run waits for (a planned retry, an attempt's
deadline) is read off its state (``run_model.timers.pending_timers``). The agent keeps
this index up to date as it stores states (``watch``); after every rebalance the ticker
rebuilds it from the state table, which faust has just recovered, so a restarted coordinator
knows every deadline again. Every ``timer_interval_s`` the ticker appends a ``TimerFired``
for each timer whose moment has come, to the run's own partition; the agent then decides on
it in order with the run's other events, from the run's facts.

The ticker writes no table and decides nothing, so it needs no lock against the agent: a
timer that fires twice, late, or after its attempt answered is harmless by construction (one
id per timer; the decider checks that what the timer waited for is still so). It stays quiet
while faust rebalances or recovers tables; a timer missed then fires at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processors.config import CoordinatorConfig
from run_model import RunState
from run_model.timers import TIMER_COMPONENT, Timer, pending_timers, timer_fired
from schemas.codec import encode_event
from schemas.envelope import build_event, deterministic_id, system_actor
from schemas.events import RunWarning, RunWarningPayload

log = logging.getLogger("aob.coordinator.timers")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Waiting:
    """One run's pending timers, and where to send their events."""

    partition: int
    tenant: str
    timers: tuple[Timer, ...]


class Ticker:
    def __init__(self, app: Any, config: CoordinatorConfig, clock: Clock) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.index: dict[str, Waiting] = {}  # run id -> its pending timers
        self.generation: int | None = None  # the rebalance the index was rebuilt after
        # (run id, timer) -> monotonic time it was last fired: not again before refire_s.
        self._fired: dict[tuple[str, Timer], float] = {}
        self.fired_total = 0

    def watch(self, state: RunState, partition: int) -> None:
        """Record ``state``'s pending timers (the agent calls this on every store)."""
        timers = tuple(pending_timers(state, self.config.timeout_grace_s))
        if timers:
            self.index[state.run_id] = Waiting(partition, state.tenant, timers)
        else:
            self.index.pop(state.run_id, None)

    def forget(self, run_id: str) -> None:
        """The run is over: it waits for nothing."""
        self.index.pop(run_id, None)

    def rebuild(self, states: Iterable[tuple[RunState, int]], generation: int | None) -> None:
        """The index from scratch, from every unfinished state held (after a rebalance)."""
        self.index = {}
        for state, partition in states:
            self.watch(state, partition)
        self.generation = generation
        log.info("timer index rebuilt: %d runs wait for a moment", len(self.index))

    def busy(self) -> bool:
        """Whether faust is rebalancing or recovering (the table may be partial)."""
        return bool(
            getattr(self.app, "rebalancing", False) or getattr(self.app, "in_recovery", False)
        )

    def due(self, now: datetime) -> list[tuple[str, Waiting, Timer]]:
        """(run id, where, timer) for every timer due at ``now`` and not fired within
        ``timer_refire_s``."""
        out = []
        mono = time.monotonic()
        live: set[tuple[str, Timer]] = set()
        for run_id, waiting in self.index.items():
            for timer in waiting.timers:
                live.add((run_id, timer))
                if timer.due_at > now:
                    continue
                last = self._fired.get((run_id, timer))
                if last is not None and mono - last < self.config.timer_refire_s:
                    continue
                out.append((run_id, waiting, timer))
        # Forget what no run waits for any more (done, or its run moved to another process).
        self._fired = {k: v for k, v in self._fired.items() if k in live}
        return out

    async def fire(self) -> int:
        """Append a TimerFired for every timer that is due; returns how many."""
        now = self.clock()
        due = self.due(now)
        if not due:
            return 0
        producer = self.app.producer
        pending = []
        for run_id, waiting, timer in due:
            key, value, headers = encode_event(timer_fired(run_id, waiting.tenant, timer, now))
            topic = self.config.runs_topic
            pending.append(await producer.send(topic, key, value, waiting.partition, None, headers))
        await asyncio.gather(*pending)
        mono = time.monotonic()
        for run_id, _, timer in due:
            self._fired[(run_id, timer)] = mono
        self.fired_total += len(due)
        return len(due)

    async def wake(self, runs: dict[str, int]) -> int:
        """Append a RunWarning to each of ``runs`` (run id -> partition): runs whose stored
        state does not load, which the index cannot hold. Handling the warning makes the
        agent rebuild the run from the log (or fail it), and its timers are then indexed as
        it is stored. The warning's id is the same for every wake-up of the run."""
        if not runs:
            return 0
        producer = self.app.producer
        pending = []
        for run_id, partition in runs.items():
            key, value, headers = encode_event(state_unreadable(run_id, self.clock()))
            topic = self.config.runs_topic
            pending.append(await producer.send(topic, key, value, partition, None, headers))
        await asyncio.gather(*pending)
        return len(runs)


def state_unreadable(run_id: str, now: datetime) -> RunWarning:
    """The wake-up of a run whose stored state does not load."""
    message = (
        "the coordinator's stored state of this run does not load: it is rebuilt from the "
        "run's events in the log as this warning is handled"
    )
    return build_event(
        RunWarning,
        RunWarningPayload(message=message),
        event_id=deterministic_id(run_id, "state_unreadable"),
        aggregate_id=run_id,
        occurred_at=now,
        actor=system_actor(TIMER_COMPONENT),
    )
