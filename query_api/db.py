"""The SQL of the read side: every query is scoped to the caller's tenant.

The column lists of the run tables are their row dataclasses' fields (``read_model.tables``),
less the columns the API does not show.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from read_model.tables import APPROVALS, NODES, RUN_VERSIONS, RUNS

# event_count is read only by ``run_state``: it tells a subscriber that something changed.
RUN_COLUMNS = RUNS.select_list(without=["event_count"])
NODE_COLUMNS = NODES.select_list(without=["successes", "scheduled_at"])
APPROVAL_COLUMNS = APPROVALS.select_list(without=["tenant"])


async def run(pool: asyncpg.Pool, tenant: str, run_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1 AND tenant = $2", run_id, tenant
    )


async def run_state(pool: asyncpg.Pool, tenant: str, run_id: str) -> asyncpg.Record | None:
    """The run as ``run`` reads it, with its event count (what tells a subscriber that
    something it can see changed)."""
    return await pool.fetchrow(
        f"SELECT {RUNS.select_list()} FROM runs WHERE run_id = $1 AND tenant = $2",
        run_id,
        tenant,
    )


async def run_partition(pool: asyncpg.Pool, tenant: str, run_id: str) -> int | None:
    """The log partition that holds the run's events (all of them: they are keyed by run)."""
    value = await pool.fetchval(
        """SELECT e.kafka_partition FROM run_events e
           JOIN runs r ON r.run_id = e.run_id AND r.tenant = $2
           WHERE e.run_id = $1 ORDER BY e.seq LIMIT 1""",
        run_id,
        tenant,
    )
    return None if value is None else int(value)


async def events_after(
    pool: asyncpg.Pool, tenant: str, run_id: str, *, seq: int, offset: int, limit: int
) -> list[asyncpg.Record]:
    """The run's events with a seq above ``seq`` and an offset above ``offset``, in seq
    order; none unless the run is ``tenant``'s."""
    return await pool.fetch(
        """SELECT e.seq, e.event_id, e.type, e.occurred_at, e.causation_id, e.actor, e.payload,
                  e.kafka_partition, e.kafka_offset, e.run_status, e.node_id, e.node_status
           FROM run_events e JOIN runs r ON r.run_id = e.run_id AND r.tenant = $2
           WHERE e.run_id = $1 AND e.seq > $3 AND e.kafka_offset > $4
           ORDER BY e.seq LIMIT $5""",
        run_id,
        tenant,
        seq,
        offset,
        limit,
    )


async def runs_page(
    pool: asyncpg.Pool,
    tenant: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    status: str | None,
    workflow_id: str | None,
) -> list[asyncpg.Record]:
    """Newest first, keyset-paginated on (created_at, run_id): stable under inserts."""
    clauses = ["tenant = $1"]
    args: list[Any] = [tenant]
    if status is not None:
        args.append(status)
        clauses.append(f"status = ${len(args)}")
    if workflow_id is not None:
        args.append(workflow_id)
        clauses.append(f"workflow_id = ${len(args)}")
    if after is not None:
        args.extend(after)
        clauses.append(f"(created_at, run_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    return await pool.fetch(
        f"""SELECT {RUN_COLUMNS} FROM runs WHERE {" AND ".join(clauses)}
            ORDER BY created_at DESC, run_id DESC LIMIT ${len(args)}""",
        *args,
    )


async def nodes_of_runs(pool: asyncpg.Pool, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT {NODE_COLUMNS} FROM node_executions WHERE run_id = ANY($1::text[])
            ORDER BY scheduled_at NULLS LAST, node_id""",
        list(run_ids),
    )


async def approvals_of_runs(pool: asyncpg.Pool, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ANY($1::text[])
            ORDER BY run_id, requested_at""",
        list(run_ids),
    )


async def pending_approvals(
    pool: asyncpg.Pool, tenant: str, limit: int, after: tuple[datetime, str, str] | None
) -> list[asyncpg.Record]:
    """The tenant's approvals still waiting for a decision, oldest request first."""
    args: list[Any] = [tenant]
    where = "tenant = $1 AND status = 'WAITING'"
    if after is not None:
        args.extend(after)
        where += " AND (requested_at, run_id, node_id) > ($2, $3, $4)"
    args.append(limit)
    return await pool.fetch(
        f"""SELECT {APPROVAL_COLUMNS} FROM approvals WHERE {where}
            ORDER BY requested_at, run_id, node_id LIMIT ${len(args)}""",
        *args,
    )


async def events_pages(
    pool: asyncpg.Pool, run_ids: Sequence[str], limit: int, after_seq: int
) -> list[asyncpg.Record]:
    """A page of events for each of many runs, in one query: each run's first ``limit``
    events after ``after_seq``, by run then seq (one index range per run, through LATERAL)."""
    return await pool.fetch(
        """SELECT r.run_id, e.seq, e.event_id, e.type, e.occurred_at, e.causation_id, e.actor,
                  e.payload, e.kafka_partition, e.kafka_offset, e.run_status, e.node_id,
                  e.node_status
           FROM unnest($1::text[]) AS r(run_id) CROSS JOIN LATERAL (
               SELECT * FROM run_events WHERE run_id = r.run_id AND seq > $2
               ORDER BY seq LIMIT $3) e
           ORDER BY r.run_id, e.seq""",
        list(run_ids),
        after_seq,
        limit,
    )


async def workflow(pool: asyncpg.Pool, tenant: str, workflow_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """SELECT workflow_id, name, latest_version, created_at, updated_at FROM workflows
           WHERE tenant = $1 AND workflow_id = $2""",
        tenant,
        workflow_id,
    )


async def workflows_page(
    pool: asyncpg.Pool, tenant: str, limit: int, after: tuple[str, str] | None
) -> list[asyncpg.Record]:
    args: list[Any] = [tenant, limit]
    where = "tenant = $1"
    if after is not None:
        args.extend(after)
        where += " AND (name, workflow_id) > ($3, $4)"
    return await pool.fetch(
        f"""SELECT workflow_id, name, latest_version, created_at, updated_at FROM workflows
            WHERE {where} ORDER BY name, workflow_id LIMIT $2""",
        *args,
    )


async def versions_of(
    pool: asyncpg.Pool, tenant: str, workflow_id: str, limit: int
) -> list[asyncpg.Record]:
    """The versions of the tenant's workflow: an id is derivable by anyone, so it is never
    read without the tenant."""
    return await pool.fetch(
        """SELECT version, definition, published_at FROM workflow_versions
           WHERE tenant = $1 AND workflow_id = $2 ORDER BY published_at, version LIMIT $3""",
        tenant,
        workflow_id,
        limit,
    )


async def patches_of_runs(pool: asyncpg.Pool, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT run_id, patch_id, status, reason, ops, base_version, submitted_by, actor_kind,
                  node_id, submitted_at, decided_at, from_version, to_version,
                  rejected_reasons, added_nodes, removed_nodes, changed_nodes
           FROM run_patches WHERE run_id = ANY($1::text[]) ORDER BY run_id, seq, patch_id""",
        list(run_ids),
    )


async def versions_of_runs(pool: asyncpg.Pool, run_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT {RUN_VERSIONS.select_list()} FROM run_versions
            WHERE run_id = ANY($1::text[]) ORDER BY run_id, seq""",
        list(run_ids),
    )
