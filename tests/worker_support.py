"""The runs topic as a worker's executor sees it, in memory, for tests without Kafka.

Every event is encoded as ``infra.bus.EventBus`` encodes it before it is kept, so an event
that could not be produced (a lone surrogate, a value nested too deep) fails here as it
would against the broker.
"""

from __future__ import annotations

from aiokafka.errors import MessageSizeTooLargeError

from schemas.codec import encode_event
from schemas.envelope import Event
from schemas.events import ModelCalled, NodeStarted
from schemas.position import Position


class RunLog:
    """Events appended in order; ``too_large`` names a type refused as Kafka refuses a
    record past its size limit."""

    def __init__(self, too_large: type[Event] | None = None) -> None:
        self.events: list[Event] = []
        self.too_large = too_large
        self.refused: list[Event] = []

    async def append(self, topic: str, event: Event) -> Position:
        if self.too_large is not None and isinstance(event, self.too_large):
            # Sent again, it would be refused again: this log says so at once instead.
            assert not self.refused, "an event too large for Kafka was retried"
            self.refused.append(event)
            raise MessageSizeTooLargeError("the message is 2000000 bytes")
        encode_event(event)
        self.events.append(event)
        return Position(topic, 0, len(self.events) - 1)

    @property
    def outcomes(self) -> list[Event]:
        """The events that end an attempt (not its start, not its model calls)."""
        return [e for e in self.events if not isinstance(e, NodeStarted | ModelCalled)]
