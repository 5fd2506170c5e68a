"""The secrets table in memory, for tests of the store and its clients without PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class Table:
    """``tenant_secrets`` in memory, answering the store's few statements."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    async def execute(self, query: str, *args: Any) -> str:
        if query.startswith("CREATE TABLE"):
            return "CREATE TABLE"
        if query.startswith("INSERT"):
            tenant, name, sealed = args
            now = datetime.now(UTC)
            old = self.rows.get((tenant, name))
            created = old["created_at"] if old else now
            self.rows[(tenant, name)] = {
                "name": name,
                "sealed": sealed,
                "created_at": created,
                "updated_at": now,
            }
            return "INSERT 0 1"
        if query.startswith("DELETE"):
            gone = self.rows.pop((args[0], args[1]), None)
            return f"DELETE {1 if gone else 0}"
        raise AssertionError(query)

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        tenant = args[0]
        rows = [r for (t, _), r in sorted(self.rows.items()) if t == tenant]
        if "ANY" in query:
            rows = [r for r in rows if r["name"] in args[1]]
        return rows

    def everything(self) -> bytes:
        """Every byte the table holds, as a dump would show it."""
        return b"".join(
            f"{t}|{n}|".encode() + r["sealed"] + str(r["created_at"]).encode()
            for (t, n), r in self.rows.items()
        )
