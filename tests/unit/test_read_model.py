"""The read model's pure parts: SQL derived from the row dataclasses, the schema's name
check, and the offsets reader's choice of table."""

from __future__ import annotations

import ast
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from projections.patch_rows import PatchRow
from projections.patch_store import PATCHES
from query_api import db as query_db
from read_model.errors import ReadModelError, SchemaNameInvalid
from read_model.offsets import load_offsets
from read_model.rows import ApprovalRow, NodeRow, RunRow, VersionRow
from read_model.schema import check_schema_name, quoted, schema_sql
from read_model.tables import APPROVALS, JSONB, NODES, RUN_VERSIONS, RUNS, Table, sql_type

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ALL_TABLES: list[Table[Any]] = [RUNS, NODES, APPROVALS, PATCHES, RUN_VERSIONS]


def fields_of(row: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(row)]


def listed(sql: str, after: str) -> list[str]:
    """The comma-separated names in the parentheses that follow ``after``."""
    found = re.search(re.escape(after) + r"\s*\(([^)]*)\)", sql)
    assert found, f"no {after!r} in {sql}"
    return [c.strip() for c in found.group(1).split(",")]


def test_the_insert_of_runs_lists_exactly_the_dataclass_fields_in_order() -> None:
    sql = RUNS.upsert_sql
    assert listed(sql, "INSERT INTO runs") == fields_of(RunRow)
    assert listed(sql, "AS x") == fields_of(RunRow)
    select = sql.split("\n")[1].removeprefix("SELECT ").split(", ")
    json_columns = {"input", "output", "budget"}
    assert select == [f"{c}::jsonb" if c in json_columns else c for c in fields_of(RunRow)]
    arrays = listed(sql, "unnest")
    assert arrays[0] == "$1::text[]" and len(arrays) == len(fields_of(RunRow))
    assert arrays[fields_of(RunRow).index("created_at")].endswith("::timestamptz[]")
    assert arrays[fields_of(RunRow).index("input")].endswith("::text[]")  # JSON as its text
    assert arrays[fields_of(RunRow).index("event_count")].endswith("::bigint[]")


def test_every_table_inserts_and_reads_all_its_fields() -> None:
    for table in ALL_TABLES:
        assert table.columns == tuple(fields_of(table.row))
        assert listed(table.upsert_sql, f"INSERT INTO {table.name}") == fields_of(table.row)
        assert table.select_list() == ", ".join(fields_of(table.row))
        params = re.findall(r"\$(\d+)::", table.upsert_sql)
        assert [int(p) for p in params] == list(range(1, len(table.columns) + 1))


def test_an_upsert_replaces_every_column_but_the_key_and_the_insert_only_ones() -> None:
    def updated(table: Table[Any]) -> list[str]:
        _, _, sets = table.upsert_sql.partition("DO UPDATE SET ")
        return [s.split(" = ")[0] for s in sets.split(", ")]

    assert "ON CONFLICT (run_id) DO UPDATE" in RUNS.upsert_sql
    assert updated(RUNS) == fields_of(RunRow)[1:]
    assert "ON CONFLICT (run_id, node_id) DO UPDATE" in NODES.upsert_sql
    assert updated(NODES) == fields_of(NodeRow)[2:]
    # An approval keeps the tenant it was requested under.
    assert updated(APPROVALS) == [c for c in fields_of(ApprovalRow)[2:] if c != "tenant"]
    assert "ON CONFLICT (run_id, patch_id) DO UPDATE" in PATCHES.upsert_sql
    assert updated(PATCHES) == fields_of(PatchRow)[2:]
    for table in (RUNS, NODES, APPROVALS, PATCHES):
        assert all(f"{c} = EXCLUDED.{c}" in table.upsert_sql for c in updated(table))


def test_a_version_once_stored_is_never_replaced() -> None:
    assert RUN_VERSIONS.upsert_sql.endswith("ON CONFLICT DO NOTHING")
    assert "DO UPDATE" not in RUN_VERSIONS.upsert_sql


def test_column_kinds_come_from_the_annotations() -> None:
    assert sql_type(str) == "text"
    assert sql_type(str | None) == "text"
    assert sql_type(int) == "bigint"
    assert sql_type(int | None) == "bigint"
    assert sql_type(bool) == "boolean"
    assert sql_type(datetime | None) == "timestamptz"
    for json_like in (Any, list[str], dict[str, Any], list[Any] | None):
        assert sql_type(json_like) == JSONB
    assert sql_type(float) == "double precision"
    assert NODES.types["cost_usd"] == "double precision"
    assert RUNS.json_columns == {"input", "output", "budget"}
    assert NODES.json_columns == {"output", "tool_calls", "items"}
    assert APPROVALS.json_columns == {"refusals"}
    assert APPROVALS.types["timed_out"] == "boolean"
    assert RUN_VERSIONS.json_columns == {"definition"}
    assert PATCHES.json_columns == {
        "ops",
        "rejected_reasons",
        "added_nodes",
        "removed_nodes",
        "changed_nodes",
        "agent_spawns",
    }


def _create_tables(sql: str) -> dict[str, set[str]]:
    """Table name -> columns, from CREATE TABLE blocks and ALTER TABLE … ADD COLUMN."""
    columns: dict[str, set[str]] = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", sql, re.S):
        for line in body.splitlines():
            word = re.match(r"\s*\"?(\w+)\"?\s+\w", line)
            if word and word.group(1) != "PRIMARY":
                columns.setdefault(name, set()).add(word.group(1))
    for name, col in re.findall(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", sql):
        columns.setdefault(name, set()).add(col)
    return columns


def test_every_row_field_is_a_column_of_its_table_in_schema_sql() -> None:
    tables = _create_tables(schema_sql())
    for table in ALL_TABLES:
        assert set(table.columns) <= tables[table.name], table.name
    # The writer fills every column of these but the fork columns (``ForkRow``).
    assert tables["runs"] - set(RUNS.columns) == {"forked_from", "forked_at", "forked_at_seq"}
    for table in (NODES, APPROVALS, PATCHES, RUN_VERSIONS):
        assert tables[table.name] == set(table.columns), table.name


def test_arrays_are_one_list_per_column_with_json_as_text() -> None:
    rows = [
        RunRow("r1", "t", "w", "wf", "v1", "RUNNING", AT, AT, input={"x": 1}),
        RunRow("r2", "t", "w", "wf", "v1", "PENDING", AT, AT),
    ]
    arrays = dict(zip(RUNS.columns, RUNS.arrays(rows), strict=True))
    assert arrays["run_id"] == ["r1", "r2"]
    assert arrays["input"] == ['{"x": 1}', None]  # no JSON null: SQL NULL
    assert arrays["created_at"] == [AT, AT]
    assert arrays["event_count"] == [0, 0]


@pytest.mark.parametrize(
    "row",
    [
        RunRow("r", "t", "w", "wf", "v", "COMPLETED", AT, AT, input=[1], output={"ok": True}),
        NodeRow("r", "n", "agent", output={"a": [1, 2]}, prompt_tokens=5),
        ApprovalRow("r", "n", "t", 1, "WAITING", "ok?", AT, refusals=[{"reason": "no"}]),
        PatchRow("r", "p", 3, ops=[{"op": "add"}], added_nodes=["x"]),
        VersionRow("r", 0, "v", {"nodes": []}, "cas://d", "cas://i", AT),
    ],
)
def test_a_row_written_and_read_back_is_the_same_row(row: Any) -> None:
    table = next(t for t in ALL_TABLES if isinstance(row, t.row))
    record = {c: values[0] for c, values in zip(table.columns, table.arrays([row]), strict=True)}
    assert table.from_record(record) == row


def test_a_column_left_out_must_be_one() -> None:
    assert RUNS.select_list(without=["event_count"]).split(", ") == [
        f for f in fields_of(RunRow) if f != "event_count"
    ]
    with pytest.raises(ValueError, match="no columns"):
        RUNS.select_list(without=["evnt_count"])
    with pytest.raises(ValueError, match="not fields"):
        Table("runs", RunRow, key=("id",))


def test_the_query_api_reads_the_columns_of_the_rows() -> None:
    assert query_db.RUN_COLUMNS.split(", ") == [c for c in RUNS.columns if c != "event_count"]
    assert query_db.APPROVAL_COLUMNS.split(", ") == [c for c in APPROVALS.columns if c != "tenant"]
    assert "successes" not in query_db.NODE_COLUMNS.split(", ")


def test_the_query_api_does_not_import_the_projector() -> None:
    for path in sorted((ROOT / "query_api").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "projections" for n in names), path.name


def test_schema_names_are_plain_lower_case_identifiers() -> None:
    assert check_schema_name("aob_rebuild_0a1b") == "aob_rebuild_0a1b"
    for bad in ("Public", "a-b", "x; DROP TABLE runs", "", "1abc", "a" * 64):
        with pytest.raises(SchemaNameInvalid):
            check_schema_name(bad)
    assert issubclass(SchemaNameInvalid, ReadModelError)
    assert quoted('we"ird') == '"we""ird"'


class _Conn:
    """Answers the offsets reader as Postgres would: the table exists or not."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.asked: list[str] = []

    async def fetchval(self, sql: str, *args: object) -> bool:
        self.asked.append(f"{sql} {args}")
        return self.exists

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        self.asked.append(f"{sql} {args}")
        return [{"topic": "aob.runs.events", "partition": 2, "next_offset": 40}]


async def test_offsets_are_read_from_the_schema_asked_for() -> None:
    conn = _Conn(exists=True)
    assert await load_offsets(conn, "read_models", "live") == {("aob.runs.events", 2): 40}  # type: ignore[arg-type]
    assert "('\"live\".projection_offsets',)" in conn.asked[0]
    assert 'FROM "live".projection_offsets WHERE projection = $1' in conn.asked[1]
    conn = _Conn(exists=True)
    await load_offsets(conn, "read_models")  # type: ignore[arg-type]
    assert "FROM projection_offsets WHERE" in conn.asked[1]


async def test_no_offsets_where_no_projector_ever_ran() -> None:
    conn = _Conn(exists=False)
    assert await load_offsets(conn, "read_models", "elsewhere") == {}  # type: ignore[arg-type]
    assert len(conn.asked) == 1
