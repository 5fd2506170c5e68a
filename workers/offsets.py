"""Which offsets may be committed when tasks of one partition finish out of order.

Tasks run concurrently, but a committed offset promises that everything before it is done,
so each partition commits only up to its lowest unfinished offset. A crash then redelivers
at most the unfinished tasks and those finished after them: at least once, never lost.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    in_flight: set[int] = field(default_factory=set)
    next_after_seen: int | None = None  # one past the highest offset handed out
    committed: int | None = None

    def started(self, offset: int) -> None:
        self.in_flight.add(offset)
        if self.next_after_seen is None or offset + 1 > self.next_after_seen:
            self.next_after_seen = offset + 1

    def finished(self, offset: int) -> None:
        self.in_flight.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit now (next record to consume), or None if nothing new."""
        if self.next_after_seen is None:
            return None
        safe = min(self.in_flight) if self.in_flight else self.next_after_seen
        return safe if self.committed is None or safe > self.committed else None


class OffsetTracker:
    """``PartitionOffsets`` per partition key (an aiokafka TopicPartition in the runtime)."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, PartitionOffsets] = {}

    def started(self, tp: Hashable, offset: int) -> None:
        self._parts.setdefault(tp, PartitionOffsets()).started(offset)

    def finished(self, tp: Hashable, offset: int) -> None:
        if tp in self._parts:
            self._parts[tp].finished(offset)

    def in_flight(self, tp: Hashable) -> int:
        part = self._parts.get(tp)
        return len(part.in_flight) if part else 0

    def to_commit(self) -> dict[Hashable, int]:
        out = {}
        for tp, part in self._parts.items():
            offset = part.committable()
            if offset is not None:
                out[tp] = offset
        return out

    def committed(self, offsets: dict[Hashable, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._parts:
                self._parts[tp].committed = offset

    def forget(self, tp: Hashable) -> None:
        """The partition went to another worker: its bookkeeping starts afresh if it returns."""
        self._parts.pop(tp, None)
