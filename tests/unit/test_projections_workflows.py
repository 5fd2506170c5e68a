"""The workflow projection keeps tenants apart: a WorkflowPublished of one tenant never
changes a row of another, even one that carries the other's workflow id (the log may hold
such events from before ids were scoped by tenant)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from projections.batch import Positioned
from projections.store import _workflows
from projections.workflows import VersionKey, VersionRow, WorkflowKey, WorkflowRow, fold_published
from schemas.envelope import Actor
from schemas.events import WorkflowPublished, WorkflowPublishedPayload
from schemas.position import Position

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REF = "cas://sha256:" + "a" * 64
SHARED_ID = "0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d"  # tenant B's workflow id


def published(tenant: str, version: str, at: int = 0, name: str = "flow") -> WorkflowPublished:
    return WorkflowPublished(
        aggregate_id=SHARED_ID,
        occurred_at=T0 + timedelta(seconds=at),
        actor=Actor(kind="user", id=f"key-{tenant}", tenant=tenant),
        payload=WorkflowPublishedPayload(
            workflow_id=SHARED_ID,
            name=name,
            version=version,
            definition={"nodes": [{"id": version, "type": "noop"}]},
            definition_ref=REF,
            ir_ref=REF,
        ),
    )


def b_row() -> WorkflowRow:
    return WorkflowRow(SHARED_ID, "tenant-b", "b-flow", "vb", T0, T0)


def test_an_event_of_another_tenant_with_the_same_id_leaves_the_row_alone() -> None:
    rows: dict[WorkflowKey, WorkflowRow] = {("tenant-b", SHARED_ID): b_row()}
    versions: dict[VersionKey, VersionRow] = {}

    fold_published(rows, versions, published("tenant-a", "va", at=5, name="squat"))

    assert rows[("tenant-b", SHARED_ID)] == b_row()
    mine = rows[("tenant-a", SHARED_ID)]
    assert (mine.tenant, mine.name, mine.latest_version) == ("tenant-a", "squat", "va")
    assert set(versions) == {("tenant-a", SHARED_ID, "va")}
    assert versions[("tenant-a", SHARED_ID, "va")].tenant == "tenant-a"


def test_the_same_version_of_the_same_id_is_one_row_per_tenant() -> None:
    rows: dict[WorkflowKey, WorkflowRow] = {}
    versions: dict[VersionKey, VersionRow] = {}
    fold_published(rows, versions, published("tenant-b", "v1", at=1))
    fold_published(rows, versions, published("tenant-a", "v1", at=2))
    assert set(rows) == {("tenant-b", SHARED_ID), ("tenant-a", SHARED_ID)}
    assert set(versions) == {("tenant-b", SHARED_ID, "v1"), ("tenant-a", SHARED_ID, "v1")}
    assert rows[("tenant-b", SHARED_ID)].updated_at == T0 + timedelta(seconds=1)


class WorkflowTables:
    """A connection that answers ``_workflows`` from rows held in memory, as PostgreSQL
    would for the statements it sends, and records every statement."""

    def __init__(self, rows: list[WorkflowRow]) -> None:
        self.rows = {(r.tenant, r.workflow_id): r for r in rows}
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.written: dict[str, list[tuple[Any, ...]]] = {}

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self.statements.append((sql, args))
        if "FROM workflow_events" in sql:
            return []
        assert "FROM workflows" in sql, sql
        tenants, ids = args  # the (tenant, workflow_id) pairs, as two arrays
        wanted = set(zip(tenants, ids, strict=True))
        return [vars(r) for key, r in self.rows.items() if key in wanted]

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.statements.append((sql, tuple(rows)))
        table = sql.split("INSERT INTO", 1)[1].split(maxsplit=1)[0]
        self.written.setdefault(table, []).extend(rows)


def _positioned(ev: WorkflowPublished, offset: int) -> Positioned:
    return Positioned(ev, Position("aob.workflows.events", 0, offset))


async def test_the_store_loads_and_writes_only_the_publishing_tenants_row() -> None:
    conn = WorkflowTables([b_row()])
    events = [published("tenant-a", "va", at=5, name="squat")]

    await _workflows(conn, [_positioned(e, i) for i, e in enumerate(events)])

    load = next(sql for sql, _ in conn.statements if "FROM workflows" in sql)
    assert "(tenant, workflow_id) IN" in load
    upserted = conn.written["workflows"]
    assert [(w[1], w[0]) for w in upserted] == [("tenant-a", SHARED_ID)]
    assert upserted[0][2:4] == ("squat", "va")
    assert [(v[0], v[1], v[2]) for v in conn.written["workflow_versions"]] == [
        ("tenant-a", SHARED_ID, "va")
    ]
    upsert = next(sql for sql, _ in conn.statements if "INSERT INTO workflows" in sql)
    assert "ON CONFLICT (tenant, workflow_id)" in upsert


async def test_the_store_folds_a_tenants_own_publication_into_its_row() -> None:
    conn = WorkflowTables([b_row()])
    events = [published("tenant-b", "vb2", at=9, name="b-flow")]

    await _workflows(conn, [_positioned(e, i) for i, e in enumerate(events)])

    (row,) = conn.written["workflows"]
    assert (row[1], row[0], row[3], row[4]) == ("tenant-b", SHARED_ID, "vb2", T0)
