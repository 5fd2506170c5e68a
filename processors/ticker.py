"""The coordinator's clock: turns timers that are due into ``TimerFired`` events.

The decider is pure and never waits; what a run waits for (a planned retry, an attempt's
deadline) is listed in the ``run_timers`` table, which the agent rewrites whenever a run's
pending timers change (``processors.core.timers.pending_timers``). Every ``timer_interval_s``
the ticker reads that table and appends a ``TimerFired`` for each timer whose moment has
come, to the run's own partition; the agent then decides on it in order with the run's other
events, from the run's facts. The ticker writes no table (faust allows that only inside an
agent) and decides nothing, so it needs no lock against the agent: a timer that fires twice,
late, or after its attempt answered is harmless by construction (one id per timer; the
decider checks that what the timer waited for is still so).

It stays quiet while faust rebalances or recovers tables: those are the moments when the
table is partial. A timer missed then fires at the next tick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust

from processors.config import CoordinatorConfig
from processors.core.timers import Timer, timer_fired
from schemas.codec import encode_event

log = logging.getLogger("aob.coordinator.timers")

Clock = Callable[[], datetime]


def timers_entry(partition: int, tenant: str, timers: list[Timer]) -> bytes:
    """What the agent stores in ``run_timers`` for one run."""
    return json.dumps(
        {"partition": partition, "tenant": tenant, "timers": [t.to_json() for t in timers]},
        separators=(",", ":"),
    ).encode()


class Ticker:
    def __init__(
        self,
        app: faust.App,
        table: faust.types.TableT[bytes, bytes],
        config: CoordinatorConfig,
        clock: Clock,
    ) -> None:
        self.app = app
        self.table = table
        self.config = config
        self.clock = clock
        # (run id, timer) -> monotonic time it was last fired: not again before refire_s.
        self._fired: dict[tuple[str, Timer], float] = {}
        # Parsed entries by run key, with the bytes they were parsed from.
        self._decoded: dict[bytes, tuple[bytes, _Entry]] = {}
        self.fired_total = 0

    def busy(self) -> bool:
        """Whether faust is rebalancing or recovering (the tables may be partial)."""
        return bool(
            getattr(self.app, "rebalancing", False) or getattr(self.app, "in_recovery", False)
        )

    def due(self, now: datetime) -> list[tuple[str, str, int, Timer]]:
        """(run id, tenant, partition, timer) for every timer due at ``now`` and not fired
        within ``timer_refire_s``."""
        out = []
        mono = time.monotonic()
        live: set[tuple[str, Timer]] = set()
        for key, raw in list(self.table.items()):
            if raw is None:
                continue
            entry = self._entry(key, raw)
            run_id = key.decode()
            for timer in entry.timers:
                live.add((run_id, timer))
                if timer.due_at > now:
                    continue
                last = self._fired.get((run_id, timer))
                if last is not None and mono - last < self.config.timer_refire_s:
                    continue
                out.append((run_id, entry.tenant, entry.partition, timer))
        # Forget what no run waits for any more (done, or its run moved to another process).
        self._fired = {k: v for k, v in self._fired.items() if k in live}
        self._decoded = {k: v for k, v in self._decoded.items() if k in self.table}
        return out

    async def tick(self) -> int:
        """Fire what is due; returns how many timers fired."""
        if self.busy():
            return 0
        now = self.clock()
        due = self.due(now)
        if not due:
            return 0
        producer = self.app.producer
        pending = []
        for run_id, tenant, partition, timer in due:
            key, value, headers = encode_event(timer_fired(run_id, tenant, timer, now))
            pending.append(
                await producer.send(self.config.runs_topic, key, value, partition, None, headers)
            )
        await asyncio.gather(*pending)
        mono = time.monotonic()
        for run_id, _, _, timer in due:
            self._fired[(run_id, timer)] = mono
        self.fired_total += len(due)
        log.debug("fired %d timers", len(due))
        return len(due)

    def _entry(self, key: bytes, raw: bytes) -> _Entry:
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        parsed: dict[str, Any] = json.loads(raw)
        entry = _Entry(
            partition=int(parsed["partition"]),
            tenant=str(parsed["tenant"]),
            timers=[Timer.from_json(t) for t in parsed["timers"]],
        )
        self._decoded[key] = (raw, entry)
        return entry


@dataclass(frozen=True)
class _Entry:
    partition: int
    tenant: str
    timers: list[Timer]
