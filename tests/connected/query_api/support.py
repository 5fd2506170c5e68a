"""What the query API tests share: a client of the service under test, and read-model rows
written as the projector would write them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from infra.settings import Settings
from read_model import schema as read_db
from tests.helpers import eventually, free_port, stop_process

ROOT = Path(__file__).resolve().parents[3]
CATCH_UP_TIMEOUT_S = 3.0  # short, so the give-up path is tested without a long wait


@dataclass
class QueryApi:
    url: str
    schema: str

    async def query(
        self, key: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                headers=headers,
            )

    async def data(self, key: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        response = await self.query(key, query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def insert_run(
    conn: asyncpg.Connection,
    tenant: str,
    *,
    run_id: str | None = None,
    workflow_id: str = "wf",
    status: str = "RUNNING",
    created_at: datetime = T0,
    input: Any = None,
    output: Any = None,
) -> str:
    run_id = run_id or f"run-{uuid.uuid4().hex}"
    await conn.execute(
        """INSERT INTO runs (run_id, tenant, workflow_id, workflow_name, version, status,
                             input, output, created_at, updated_at, started_at)
           VALUES ($1, $2, $3, $4, 'v1', $5, $6::jsonb, $7::jsonb, $8, $8, $8)""",
        run_id,
        tenant,
        workflow_id,
        f"{workflow_id}-name",
        status,
        json.dumps(input),
        json.dumps(output) if output is not None else None,
        created_at,
    )
    return run_id


async def insert_node(
    conn: asyncpg.Connection,
    run_id: str,
    node_id: str,
    *,
    status: str = "SUCCEEDED",
    output: Any = None,
    output_ref: str | None = None,
    order: int = 0,
    error: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO node_executions (run_id, node_id, node_type, status, attempts,
                 scheduled_at, started_at, finished_at, output, output_ref, error)
           VALUES ($1, $2, 'noop', $3, 1, $4, $4, $4, $5::jsonb, $6, $7)""",
        run_id,
        node_id,
        status,
        T0 + timedelta(seconds=order),
        json.dumps(output) if output is not None else None,
        output_ref,
        error,
    )


async def insert_events(conn: asyncpg.Connection, run_id: str, count: int) -> list[str]:
    ids = [f"ev-{uuid.uuid4().hex}" for _ in range(count)]
    await conn.executemany(
        """INSERT INTO run_events (run_id, seq, event_id, type, occurred_at, kafka_partition,
                 kafka_offset, causation_id, actor, payload)
           VALUES ($1, $2, $3, 'run.node_succeeded', $4, 0, $7, NULL, $5::jsonb, $6::jsonb)""",
        [
            (
                run_id,
                seq,
                event_id,
                T0 + timedelta(seconds=seq),
                json.dumps({"kind": "system", "id": "coordinator"}),
                json.dumps({"n": seq}),
                seq,  # as kafka_offset
            )
            for seq, event_id in enumerate(ids, start=1)
        ],
    )
    return ids


@asynccontextmanager
async def query_api_process(
    stack: Settings, read_schema: str, env_extra: dict[str, str] | None = None
) -> AsyncIterator[QueryApi]:
    """A query API process on a free port reading ``read_schema`` (made here, dropped after),
    with ``env_extra`` on top of the environment."""
    conn = await read_db.connect(stack.postgres_dsn, read_schema)
    try:
        await read_db.ensure_schema(conn, read_schema)
    finally:
        await conn.close()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AOB_QUERY_API_PORT": str(port),
        "AOB_QUERY_API_READ_SCHEMA": read_schema,
        "AOB_QUERY_API_CATCH_UP_TIMEOUT_S": str(CATCH_UP_TIMEOUT_S),
        **(env_extra or {}),
    }
    proc = subprocess.Popen([sys.executable, "-m", "query_api"], cwd=ROOT, env=env)
    api = QueryApi(url=f"http://{stack.host}:{port}", schema=read_schema)
    try:

        async def healthy() -> None:
            assert proc.poll() is None, f"query_api exited with {proc.returncode}"
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"{api.url}/healthz")
            assert response.status_code == 200

        await eventually(healthy, timeout=30, retry_on=(AssertionError, httpx.HTTPError))  # type: ignore[arg-type]
        yield api
    finally:
        stop_process(proc)
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {read_schema} CASCADE")
        finally:
            await conn.close()
