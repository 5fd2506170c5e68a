"""The DDL that keys workflows by tenant, read with PostgreSQL's own parser (libpg_query,
through pglast): no server is needed to know that every statement parses, that each table's
key includes the tenant, that a deployment with the old key is moved to the new one by a
DO block that acts only while the key lacks the tenant, and that every upsert's conflict
target is the table's key. Whether the migration does what it says on a live database is
the connected lane's to show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pglast
import pytest
from pglast import ast, enums
from pglast.parser import parse_plpgsql_json
from pglast.stream import RawStream

from command_api import registry
from projections.batch import Positioned
from projections.store import _workflows
from read_model.schema import schema_sql
from schemas.envelope import Actor
from schemas.events import WorkflowPublished, WorkflowPublishedPayload
from schemas.position import Position

KEYS = {
    "workflow_registry": ["tenant", "workflow_id", "version"],
    "workflows": ["tenant", "workflow_id"],
    "workflow_versions": ["tenant", "workflow_id", "version"],
}
DDL_OF = {
    "workflow_registry": registry.DDL,
    "workflows": schema_sql(),
    "workflow_versions": schema_sql(),
}


def statements(sql: str) -> list[ast.Node]:
    return [raw.stmt for raw in pglast.parse_sql(sql)]


def primary_key(create: ast.CreateStmt) -> list[str]:
    for element in create.tableElts:
        if (
            isinstance(element, ast.Constraint)
            and element.contype == enums.ConstrType.CONSTR_PRIMARY
        ):
            return [k.sval for k in element.keys]
        if isinstance(element, ast.ColumnDef):
            for c in element.constraints or ():
                if c.contype == enums.ConstrType.CONSTR_PRIMARY:
                    return [element.colname]
    raise AssertionError(f"{create.relation.relname} has no primary key")


@dataclass(frozen=True)
class Step:
    """One statement of a DO block: ``kind`` is the PL/pgSQL statement type."""

    kind: str
    sql: str
    guarded: bool  # inside the IF


def do_body(stmt: ast.DoStmt) -> str:
    (arg,) = [a for a in stmt.args if a.defname == "as"]
    return str(arg.arg.sval)


def steps(body: str) -> Iterator[Step]:
    """The DO block's statements in order (those of an IF's branch after its condition),
    each one parsed: a block that PostgreSQL would refuse fails here."""
    parsed = json.loads(parse_plpgsql_json(f"DO $$ {body} $$;"))
    block = parsed[0]["PLpgSQL_function"]["action"]["PLpgSQL_stmt_block"]["body"]

    def walk(items: list[dict[str, Any]], guarded: bool) -> Iterator[Step]:
        for item in items:
            ((kind, node),) = item.items()
            if kind == "PLpgSQL_stmt_execsql":
                yield Step(kind, node["sqlstmt"]["PLpgSQL_expr"]["query"], guarded)
            elif kind == "PLpgSQL_stmt_dynexecute":
                yield Step(kind, node["query"]["PLpgSQL_expr"]["query"], guarded)
            elif kind == "PLpgSQL_stmt_if":
                yield Step(kind, node["cond"]["PLpgSQL_expr"]["query"], guarded)
                yield from walk(node["then_body"], True)
                assert "else_body" not in node and "elsif_list" not in node
            else:
                assert kind == "PLpgSQL_stmt_return", kind

    for step in walk(block, False):
        if step.kind == "PLpgSQL_stmt_execsql":
            pglast.parse_sql(step.sql.replace(" INTO old_key", ""))
        yield step


def migration_of(table: str) -> list[Step]:
    """The steps of the DO block that moves ``table`` to its key (it follows its CREATE)."""
    found: list[list[Step]] = []
    created = False
    for stmt in statements(DDL_OF[table]):
        if isinstance(stmt, ast.CreateStmt) and stmt.relation.relname == table:
            created = True
        elif isinstance(stmt, ast.DoStmt) and f"'{table}'::regclass" in do_body(stmt):
            assert created, f"the migration of {table} runs before its CREATE TABLE"
            found.append(list(steps(do_body(stmt))))
    assert len(found) == 1, f"{len(found)} migrations of {table}"
    return found[0]


def test_every_statement_parses_and_every_do_block_is_valid_plpgsql() -> None:
    for sql in {registry.DDL, schema_sql()}:
        for stmt in statements(sql):
            if isinstance(stmt, ast.DoStmt):
                assert list(steps(do_body(stmt)))


@pytest.mark.parametrize("table", sorted(KEYS))
def test_a_new_table_is_created_with_the_tenants_key(table: str) -> None:
    (create,) = [
        s
        for s in statements(DDL_OF[table])
        if isinstance(s, ast.CreateStmt) and s.relation.relname == table
    ]
    assert create.if_not_exists
    assert primary_key(create) == KEYS[table]


@pytest.mark.parametrize("table", sorted(KEYS))
def test_an_old_table_is_moved_to_the_tenants_key_only_while_its_key_lacks_the_tenant(
    table: str,
) -> None:
    found, condition, *guarded = migration_of(table)
    # The old key's name, found only if the table's primary key has no tenant column.
    assert found.kind == "PLpgSQL_stmt_execsql" and not found.guarded
    assert f"c.conrelid = '{table}'::regclass AND c.contype = 'p'" in found.sql
    assert "NOT EXISTS" in found.sql and "a.attname = 'tenant'" in found.sql
    assert condition.kind == "PLpgSQL_stmt_if" and condition.sql == "old_key IS NOT NULL"
    assert all(step.guarded for step in guarded)
    *_, drop, add = guarded
    assert drop.kind == "PLpgSQL_stmt_dynexecute"
    assert drop.sql == f"format('ALTER TABLE {table} DROP CONSTRAINT %I', old_key)"
    (alter,) = statements(add.sql)
    assert isinstance(alter, ast.AlterTableStmt) and alter.relation.relname == table
    (cmd,) = alter.cmds
    assert cmd.subtype == enums.AlterTableType.AT_AddConstraint
    assert cmd.def_.contype == enums.ConstrType.CONSTR_PRIMARY
    assert [k.sval for k in cmd.def_.keys] == KEYS[table]


def test_old_versions_get_their_workflows_tenant_before_the_key_moves() -> None:
    _, _, *guarded = migration_of("workflow_versions")
    kinds = [type(statements(step.sql)[0]).__name__ for step in guarded[:-2]]
    assert kinds == ["AlterTableStmt", "UpdateStmt", "DeleteStmt", "AlterTableStmt"]
    add_column, update, delete, not_null = (statements(step.sql)[0] for step in guarded[:-2])
    (cmd,) = add_column.cmds
    assert cmd.subtype == enums.AlterTableType.AT_AddColumn and cmd.missing_ok
    assert cmd.def_.colname == "tenant"
    assert update.relation.relname == "workflow_versions"
    assert [f.relname for f in update.fromClause] == ["workflows"]
    assert [t.name for t in update.targetList] == ["tenant"]
    where = RawStream()(update.whereClause)
    assert "v.tenant IS NULL" in where and "w.workflow_id = v.workflow_id" in where
    assert RawStream()(delete.whereClause) == "tenant IS NULL"
    (cmd,) = not_null.cmds
    assert cmd.subtype == enums.AlterTableType.AT_SetNotNull and cmd.name == "tenant"


def test_the_registrys_latest_index_is_the_tenants() -> None:
    indexes = {
        s.idxname: [e.name for e in s.indexParams]
        for s in statements(registry.DDL)
        if isinstance(s, ast.IndexStmt)
    }
    assert indexes["workflow_registry_tenant_latest"] == [
        "tenant",
        "workflow_id",
        "last_published_at",
    ]
    dropped = [
        ".".join(n.sval for n in names)
        for s in statements(registry.DDL)
        if isinstance(s, ast.DropStmt)
        for names in s.objects
    ]
    assert dropped == ["workflow_registry_latest"]


# --- upserts: the conflict target is the table's key ---------------------------------------


class Recorder:
    """A pool or connection that records what it is sent and finds nothing."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    async def execute(self, sql: str, *args: Any) -> None:
        self.sql.append(sql)

    async def executemany(self, sql: str, rows: Any) -> None:
        self.sql.append(sql)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.sql.append(sql)
        return []


def conflict_targets(sql: list[str]) -> dict[str, list[str]]:
    out = {}
    for text in sql:
        for stmt in statements(text):
            if isinstance(stmt, ast.InsertStmt) and stmt.onConflictClause:
                infer = stmt.onConflictClause.infer  # None: any conflict (no target)
                out[stmt.relation.relname] = [e.name for e in infer.indexElems] if infer else []
    return out


async def test_the_registry_upsert_conflicts_on_the_tenants_key() -> None:
    pool = Recorder()
    version = registry.PublishedVersion("wf", "v", "flow", "cas://d", "cas://i", "e", "p")
    await registry.record_version(pool, "acme", version)  # type: ignore[arg-type]
    assert conflict_targets(pool.sql) == {"workflow_registry": KEYS["workflow_registry"]}


async def test_the_projection_upserts_conflict_on_the_tenants_key() -> None:
    conn = Recorder()
    event = WorkflowPublished(
        aggregate_id="wf",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        actor=Actor(kind="user", id="k", tenant="acme"),
        payload=WorkflowPublishedPayload(
            workflow_id="wf",
            name="flow",
            version="v",
            definition={"nodes": []},
            definition_ref="cas://d",
            ir_ref="cas://i",
        ),
    )
    await _workflows(conn, [Positioned(event, Position("aob.workflows.events", 0, 0))])  # type: ignore[arg-type]
    assert conflict_targets(conn.sql) == {
        "workflow_events": [],  # keyed by event id: a redelivered event is dropped
        "workflows": KEYS["workflows"],
        "workflow_versions": KEYS["workflow_versions"],
    }
