"""Rough figures of the coordinator's loop: events per second and per-event latency, logged
now and then, and the same figures as Prometheus metrics (``processors.metrics``).

Cheap enough to run on every event: a counter and a bounded list of durations, summarised
and reset at each report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from processors import metrics


@dataclass
class LoopStats:
    events: int = 0
    decisions: int = 0
    durations: list[float] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)
    max_samples: int = 100_000
    batches: int = 0
    batch_records: int = 0
    batch_seconds: float = 0.0

    def record(self, seconds: float, decided: int) -> None:
        self.events += 1
        self.decisions += decided
        metrics.RECORDS.inc()
        metrics.DECISIONS.inc(decided)
        metrics.STEP_SECONDS.observe(seconds)
        if len(self.durations) < self.max_samples:
            self.durations.append(seconds)

    def batch(self, records: int, seconds: float) -> None:
        """One batch: its records, its time from the first step to the stored states."""
        self.batches += 1
        self.batch_records += records
        self.batch_seconds += seconds
        metrics.BATCH_RECORDS.observe(records)
        metrics.BATCH_SECONDS.observe(seconds)

    def report(self) -> dict[str, float]:
        """The figures since the last report, then start counting afresh."""
        elapsed = max(time.monotonic() - self.since, 1e-9)
        ordered = sorted(self.durations)

        def pct(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

        out = {
            "events": float(self.events),
            "records_out": float(self.decisions),
            "events_per_s": self.events / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": ordered[-1] * 1000 if ordered else 0.0,
            "batches": float(self.batches),
            "records_per_batch": self.batch_records / self.batches if self.batches else 0.0,
            "batch_mean_ms": self.batch_seconds * 1000 / self.batches if self.batches else 0.0,
        }
        self.events, self.decisions, self.durations = 0, 0, []
        self.batches, self.batch_records, self.batch_seconds = 0, 0, 0.0
        self.since = time.monotonic()
        return out
