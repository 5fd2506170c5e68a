"""Through the GraphQL schema, two tenants with a workflow of the same id: each reads its
own workflow, its own versions and its own runs, never the other's.

The pool here answers each query from rows in memory by the equalities of its WHERE clause
(``column = $n``), as PostgreSQL would for these simple queries: a read that leaves the
tenant out gets both tenants' rows, and the test sees them.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from query_api.schema import schema
from read_model.rows import RunRow

AT = datetime(2026, 1, 1, tzinfo=UTC)
SHARED_ID = "0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d"


def _workflow(tenant: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "workflow_id": SHARED_ID,
        "name": f"{tenant}-flow",
        "latest_version": f"{tenant}-v",
        "created_at": AT,
        "updated_at": AT,
    }


def _version(tenant: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "workflow_id": SHARED_ID,
        "version": f"{tenant}-v",
        "definition": {"owner": tenant},
        "published_at": AT,
    }


def _run(tenant: str) -> dict[str, Any]:
    return asdict(RunRow(f"run-{tenant}", tenant, SHARED_ID, "flow", "v", "RUNNING", AT, AT))


TABLES = {
    "workflows": [_workflow("a"), _workflow("b")],
    "workflow_versions": [_version("a"), _version("b")],
    "runs": [_run("a"), _run("b")],
}


class TablePool:
    """Answers ``SELECT … FROM <table> WHERE col = $n AND …`` from ``TABLES``."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        self.queries.append((sql, args))
        table = re.search(r"FROM (\w+)", sql)
        assert table, sql
        where = sql.split("WHERE", 1)[1] if "WHERE" in sql else ""
        equal = {col: args[int(n) - 1] for col, n in re.findall(r"\b(\w+) = \$(\d+)", where)}
        return [r for r in TABLES[table.group(1)] if all(r[c] == v for c, v in equal.items())]

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return self._rows(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = self._rows(sql, args)
        assert len(rows) <= 1, sql
        return rows[0] if rows else None


def _context(tenant: str, pool: TablePool) -> SimpleNamespace:
    return SimpleNamespace(pool=pool, tenant=tenant, nodes=None, watcher=None, settings=None)


async def test_a_workflow_and_its_versions_are_the_callers_only() -> None:
    for tenant in ("a", "b"):
        result = await schema.execute(
            f'{{ workflow(id: "{SHARED_ID}") {{ name versions {{ version definition }} }} }}',
            context_value=_context(tenant, TablePool()),
        )
        assert result.errors is None, result.errors
        assert result.data == {
            "workflow": {
                "name": f"{tenant}-flow",
                "versions": [{"version": f"{tenant}-v", "definition": {"owner": tenant}}],
            }
        }


async def test_workflows_list_only_the_callers() -> None:
    result = await schema.execute(
        "{ workflows { edges { node { id name versions { version } } } } }",
        context_value=_context("a", TablePool()),
    )
    assert result.errors is None, result.errors
    assert result.data == {
        "workflows": {
            "edges": [
                {"node": {"id": SHARED_ID, "name": "a-flow", "versions": [{"version": "a-v"}]}}
            ]
        }
    }


async def test_runs_filtered_by_a_shared_workflow_id_are_the_callers_only() -> None:
    result = await schema.execute(
        f'{{ runs(filter: {{workflowId: "{SHARED_ID}"}}) {{ edges {{ node {{ id }} }} }} }}',
        context_value=_context("b", TablePool()),
    )
    assert result.errors is None, result.errors
    assert result.data == {"runs": {"edges": [{"node": {"id": "run-b"}}]}}


async def test_another_tenant_finds_no_workflow_by_an_unknown_id() -> None:
    pool = TablePool()
    result = await schema.execute(
        f'{{ workflow(id: "{SHARED_ID}") {{ name }} }}', context_value=_context("c", pool)
    )
    assert result.errors is None and result.data == {"workflow": None}
    assert all("tenant = $" in sql for sql, _ in pool.queries)
