"""What the projector knows of the runs whose every event it applied itself.

Before it writes a batch, the projector must know which events ``run_events`` holds already
(an event delivered twice is skipped with all its effects) and each run's last ``seq``. Asked
of PostgreSQL, those are two statements a batch: one probe of the unique index on
``event_id`` per event (random keys: on a large table, most probes read a page that is not
in memory), and a scan of each run's keys for its last ``seq``. Together they were about a
third of PostgreSQL's time in a burst of fanout10 runs.

A run whose first event this projector applied has no history it did not see, as long as it
owns the run's partition (every event of a run is on one partition, and a partition moves
only between batches): its event ids and last ``seq`` are known here. So:

- a run enters only with its first event (PostgreSQL had no event of it), and is then
  known from the batch on, once the batch has committed (``commit``); what a batch that
  rolled back would have taught is never learnt;
- a run leaves when it has too many events to keep (a long map), or when room is needed
  for newer runs; it is then asked of PostgreSQL again, as a run never known;
- everything is forgotten when partitions move, and when the projector resumes after a fault
  (a commit whose outcome is unknown may or may not have happened).

Should what is known ever be behind the table anyway (another writer), the insert of the
batch's events says so: it writes fewer rows than it was given, as an event id or a
``(run_id, seq)`` is taken already. The batch then rolls back, everything is forgotten, and
it is applied again from what PostgreSQL says (``projections.store``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

# Enough for the live runs of a few bursts: a run of 23 events takes about 3.7 KB here.
DEFAULT_RUNS = 5_000
# A run with more events than this (a map over many items) is asked of PostgreSQL instead.
DEFAULT_EVENTS_PER_RUN = 1_000


@dataclass
class KnownRun:
    last_seq: int
    event_ids: set[str] = field(default_factory=set)


@dataclass
class Learnt:
    """What a batch teaches about its runs, kept only if it commits: each run's last
    ``seq`` and the ids of its events the batch wrote."""

    runs: dict[str, KnownRun] = field(default_factory=dict)

    def wrote(self, run_id: str, seq: int, event_id: str) -> None:
        run = self.runs.setdefault(run_id, KnownRun(seq))
        run.last_seq = seq
        run.event_ids.add(event_id)


class KnownRuns:
    def __init__(
        self, runs: int = DEFAULT_RUNS, events_per_run: int = DEFAULT_EVENTS_PER_RUN
    ) -> None:
        self.runs = runs
        self.events_per_run = events_per_run
        self._known: OrderedDict[str, KnownRun] = OrderedDict()
        self.forgotten = 0  # times everything was forgotten (a fault, a move, a stale run)

    def __len__(self) -> int:
        return len(self._known)

    def get(self, run_id: str) -> KnownRun | None:
        return self._known.get(run_id)

    def commit(self, learnt: Learnt, new_runs: Iterable[str]) -> None:
        """Keep what a committed batch taught: of the runs known before it, and of
        ``new_runs``, those whose first event it wrote."""
        new = set(new_runs)
        for run_id, taught in learnt.runs.items():
            known = self._known.get(run_id)
            if known is None:
                if run_id not in new:
                    continue  # a run with history written before: PostgreSQL knows it
                known = self._known[run_id] = KnownRun(0)
            known.last_seq = taught.last_seq
            known.event_ids |= taught.event_ids
            self._known.move_to_end(run_id)
            if len(known.event_ids) > self.events_per_run:
                del self._known[run_id]
        while len(self._known) > self.runs:
            self._known.popitem(last=False)

    def forget(self) -> None:
        """Forget every run (partitions moved, a fault, or a run found stale)."""
        if self._known:
            self.forgotten += 1
        self._known.clear()
