"""The coordinator handles a partition's records in order with none left out, whatever
faust delivers: a record past the next one due makes it read the gap from the log first.

Only the bookkeeping is under test here: ``_handle_one`` is replaced by a recorder, the
table by a dict, and the log reader by a function over a list.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from processors.config import CoordinatorConfig
from processors.coordinator import Coordinator, partition_marker
from processors.recovery import Record


class Log:
    def __init__(self, n: int) -> None:
        self.records: list[Record] = [(i, b"k", f"v{i}".encode()) for i in range(n)]
        self.reads: list[tuple[int, int, int]] = []

    async def read(self, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.records if start <= r[0] < end]


def coordinator(log: Log, table: dict[bytes, bytes]) -> tuple[Coordinator, list[int]]:
    parts: Any = SimpleNamespace(app=SimpleNamespace(), table=table, runs_topic=None)
    c = Coordinator(parts, CoordinatorConfig(), read_range=log.read)
    handled: list[int] = []

    async def record(key: Any, value: Any, where: tuple[int, int]) -> None:
        handled.append(where[1])

    c._handle_one = record  # type: ignore[method-assign]
    return c, handled


async def test_records_faust_skipped_are_read_from_the_log_and_handled_in_order() -> None:
    log, table = Log(10), {partition_marker(0): b"0"}
    c, handled = coordinator(log, table)
    for offset in (0, 1, 2, 6, 7, 3, 8, 9):  # 3..5 skipped, then 3 comes late
        await c.handle(b"k", b"v", (0, offset))
    assert handled == [0, 1, 2, 3, 4, 5, 6, 7, 3, 8, 9]
    assert log.reads == [(0, 3, 6)]
    assert table[partition_marker(0)] == b"10"
    assert c.gaps_filled == 3


async def test_a_restart_goes_on_from_the_offset_the_table_says_is_due() -> None:
    # The previous process handled up to 4 (its table says 5 is due), but the group's
    # committed offset was 8: faust resumes at 8, so 5..7 must come from the log.
    log, table = Log(10), {partition_marker(2): b"5"}
    c, handled = coordinator(log, table)
    await c.handle(b"k", b"v", (2, 8))
    assert handled == [5, 6, 7, 8]
    # ... and a restart that resumes earlier than due handles the repeats (idempotently).
    c2, handled2 = coordinator(log, table)
    await c2.handle(b"k", b"v", (2, 7))
    assert handled2 == [7]
    assert table[partition_marker(2)] == b"9"
