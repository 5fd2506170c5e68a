"""A fetched batch of records, decoded: events with their log positions, and poison."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.codec import decode_event
from schemas.envelope import Event
from schemas.errors import PoisonRecord
from schemas.position import Position


@dataclass(frozen=True)
class Positioned:
    event: Event
    position: Position


@dataclass(frozen=True)
class Poison:
    position: Position
    reason: str


@dataclass
class Batch:
    events: list[Positioned] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    # (topic, partition) -> next offset to consume, stored with the batch's rows.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events) + len(self.poison)


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def decode_batch(records: Iterable[RawRecord]) -> Batch:
    """Records in log order (per partition) -> a Batch; undecodable ones become Poison."""
    batch = Batch()
    for r in records:
        position = Position(r.topic, r.partition, r.offset)
        try:
            batch.events.append(Positioned(decode_event(r.value), position))
        except PoisonRecord as e:
            batch.poison.append(Poison(position, e.reason))
        key = (r.topic, r.partition)
        batch.next_offsets[key] = max(batch.next_offsets.get(key, 0), r.offset + 1)
    return batch
