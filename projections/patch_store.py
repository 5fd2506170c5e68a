"""The patch part of a projected batch: ``run_patches``, ``run_versions``, removed nodes.

Patches are rare next to node events, so their rows are loaded only for the patch ids a
batch's events name.
"""

from __future__ import annotations

import asyncpg

from projections.batch import Positioned
from projections.patch_rows import PatchRow
from projections.runs import RunFold
from read_model.tables import Table
from schemas.events import PatchApplied, PatchRejected, PatchSubmitted

PATCHES = Table("run_patches", PatchRow, key=("run_id", "patch_id"))


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
    for patch in await PATCHES.fetch(
        conn, "run_id = ANY($1::text[]) AND patch_id = ANY($2::text[])", run_ids, patch_ids
    ):
        fold.patches[(patch.run_id, patch.patch_id)] = patch
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
