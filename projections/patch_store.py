"""The patch part of a projected batch: ``run_patches``, ``run_versions``, removed nodes.

Patches are rare next to node events, so their rows are loaded only for the patch ids a
batch's events name, and written with ``executemany``.
"""

from __future__ import annotations

import json

import asyncpg

from projections.batch import Positioned
from projections.patch_rows import PatchRow, VersionRow
from projections.runs import RunFold
from schemas.events import PatchApplied, PatchRejected, PatchSubmitted

PATCH_COLUMNS = (
    "run_id, patch_id, seq, status, reason, ops, base_version, submitted_by, actor_kind,"
    " node_id, attempt, submitted_at, decided_at, from_version, to_version, current_version,"
    " rejected_reasons, added_nodes, removed_nodes, changed_nodes, agent_spawns"
)
PATCH_JSON = (
    "ops",
    "rejected_reasons",
    "added_nodes",
    "removed_nodes",
    "changed_nodes",
    "agent_spawns",
)


def _loads(text: str | None) -> object:
    return None if text is None else json.loads(text)


def patch_ids_of(events: list[Positioned]) -> list[str]:
    ids: set[str] = set()
    for pe in events:
        if isinstance(pe.event, PatchSubmitted):
            ids.add(pe.event.event_id)
        elif isinstance(pe.event, PatchApplied | PatchRejected):
            ids.add(pe.event.payload.patch_id)
    return sorted(ids)


async def load_patches(
    conn: asyncpg.Connection, fold: RunFold, run_ids: list[str], patch_ids: list[str]
) -> None:
    """The stored rows of these patches, and each run's highest version seq, into ``fold``."""
    for r in await conn.fetch(
        f"""SELECT {PATCH_COLUMNS} FROM run_patches
            WHERE run_id = ANY($1::text[]) AND patch_id = ANY($2::text[])""",
        run_ids,
        patch_ids,
    ):
        row = dict(r)
        for name in PATCH_JSON:
            row[name] = _loads(row[name])
        fold.patches[(row["run_id"], row["patch_id"])] = PatchRow(**row)
    for r in await conn.fetch(
        "SELECT run_id, max(seq) AS seq FROM run_versions"
        " WHERE run_id = ANY($1::text[]) GROUP BY run_id",
        run_ids,
    ):
        fold.version_seq[r["run_id"]] = r["seq"]


async def delete_nodes(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> None:
    if keys:
        await conn.execute(
            """DELETE FROM node_executions n
               USING unnest($1::text[], $2::text[]) AS x(r, i)
               WHERE n.run_id = x.r AND n.node_id = x.i""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )


async def write_patches(conn: asyncpg.Connection, rows: list[PatchRow]) -> None:
    if not rows:
        return
    # Few per batch (patches are rare next to node events), so executemany is enough.
    await conn.executemany(
        f"""INSERT INTO run_patches ({PATCH_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                    $16, $17::jsonb, $18::jsonb, $19::jsonb, $20::jsonb, $21::jsonb)
            ON CONFLICT (run_id, patch_id) DO UPDATE SET
              seq = EXCLUDED.seq, status = EXCLUDED.status, reason = EXCLUDED.reason,
              ops = EXCLUDED.ops, base_version = EXCLUDED.base_version,
              submitted_by = EXCLUDED.submitted_by, actor_kind = EXCLUDED.actor_kind,
              node_id = EXCLUDED.node_id, attempt = EXCLUDED.attempt,
              submitted_at = EXCLUDED.submitted_at, decided_at = EXCLUDED.decided_at,
              from_version = EXCLUDED.from_version, to_version = EXCLUDED.to_version,
              current_version = EXCLUDED.current_version,
              rejected_reasons = EXCLUDED.rejected_reasons,
              added_nodes = EXCLUDED.added_nodes, removed_nodes = EXCLUDED.removed_nodes,
              changed_nodes = EXCLUDED.changed_nodes, agent_spawns = EXCLUDED.agent_spawns""",
        [
            (
                p.run_id,
                p.patch_id,
                p.seq,
                p.status,
                p.reason,
                None if p.ops is None else json.dumps(p.ops),
                p.base_version,
                p.submitted_by,
                p.actor_kind,
                p.node_id,
                p.attempt,
                p.submitted_at,
                p.decided_at,
                p.from_version,
                p.to_version,
                p.current_version,
                json.dumps(p.rejected_reasons),
                json.dumps(p.added_nodes),
                json.dumps(p.removed_nodes),
                json.dumps(p.changed_nodes),
                json.dumps(p.agent_spawns),
            )
            for p in rows
        ],
    )


async def write_versions(conn: asyncpg.Connection, rows: list[VersionRow]) -> None:
    if rows:
        await conn.executemany(
            """INSERT INTO run_versions (run_id, seq, version, definition, definition_ref,
                                         ir_ref, patch_id, from_version, created_at)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING""",
            [
                (
                    v.run_id,
                    v.seq,
                    v.version,
                    json.dumps(v.definition),
                    v.definition_ref,
                    v.ir_ref,
                    v.patch_id,
                    v.from_version,
                    v.created_at,
                )
                for v in rows
            ],
        )
