"""Positions in the log, as tokens the read side understands (read-your-writes).

A command's answer carries the position of the event it appended; ``run(id, after:)`` on the
read side waits until the projection has consumed past it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Position:
    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, token: str) -> Position:
        """ValueError with a reason if ``token`` is not ``<topic>:<partition>:<offset>``."""
        parts = token.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"position {token!r} is not <topic>:<partition>:<offset>")
        topic, partition, offset = parts
        if not (partition.isdigit() and offset.isdigit()):
            raise ValueError(f"position {token!r} has a non-numeric partition or offset")
        return cls(topic, int(partition), int(offset))
