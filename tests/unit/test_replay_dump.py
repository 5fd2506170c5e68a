"""The stable dump's pure parts: canonical rows, digests, clock columns, differences."""

from __future__ import annotations

import json

from replay.dump import Dump, TableDump, canonical, differences, is_clock_default


def test_canonical_rows_do_not_depend_on_key_order() -> None:
    assert canonical({"b": 1, "a": {"d": [1, 2], "c": None}}) == canonical(
        {"a": {"c": None, "d": [1, 2]}, "b": 1}
    )
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_the_digest_is_of_the_rows_in_order() -> None:
    a = TableDump("t", ('{"k":1}', '{"k":2}'))
    assert a.digest == TableDump("t", ('{"k":1}', '{"k":2}')).digest
    assert a.digest != TableDump("t", ('{"k":2}', '{"k":1}')).digest
    assert a.digest != TableDump("t", ('{"k":1}',)).digest


def test_only_defaults_that_stamp_the_clock_are_clock_columns() -> None:
    assert is_clock_default("now()")
    assert is_clock_default("CURRENT_TIMESTAMP")
    assert not is_clock_default(None)
    assert not is_clock_default("0")
    assert not is_clock_default("'[]'::jsonb")


def test_differences_name_the_table_and_the_rows_on_each_side() -> None:
    before = Dump("public", {"runs": TableDump("runs", ('{"id":1}', '{"id":2}'))})
    after = Dump("public", {"runs": TableDump("runs", ('{"id":1}', '{"id":3}'))})
    assert differences(before, before) == []
    assert differences(before, after) == [
        "runs: 2 rows before, 2 after; 1 only before, 1 only after",
        '  - {"id":2}',
        '  + {"id":3}',
    ]
    assert differences(before, Dump("public")) == ["runs: only in before"]


def test_dump_lines_are_json_rows_then_one_digest_per_table() -> None:
    dump = Dump("public", {"runs": TableDump("runs", ('{"id":1}',))})
    lines = [json.loads(line) for line in dump.lines()]
    assert lines[0] == {"table": "runs", "row": {"id": 1}}
    assert lines[1] == {"table": "runs", "rows": 1, "sha256": dump.tables["runs"].digest}
