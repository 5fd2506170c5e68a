"""Applying one decoded batch to Postgres: rows and offsets in ONE transaction.

Work per batch is a fixed handful of set-based statements (``unnest`` of arrays), whatever
its size: one statement per row would cap the projection at a few thousand rows a second.
An event whose id is already in ``run_events`` / ``workflow_events`` was applied before
(redelivery, a restart, another projector): it is skipped with all its effects.
Patched versions' definitions and IRs go to the CAS inside the batch, before it commits
(see ``version_blobs``). The live projector passes what it knows of the runs it wrote from
their first event (``projections.known_runs``): those are not asked of PostgreSQL again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from projections.batch import Batch, Positioned
from projections.known_runs import KnownRuns, Learnt
from projections.patch_store import PATCHES, delete_nodes, load_patches, patch_ids_of
from projections.runs import RunFold
from projections.version_blobs import JsonStore, store_blobs
from projections.workflows import VersionKey, VersionRow, WorkflowRow, fold_published, key_of
from read_model.channels import PROGRESS_CHANNEL, RUN_CHANNEL
from read_model.offsets import store_offsets
from read_model.rows import ForkRow
from read_model.schema import lock_batches
from read_model.tables import APPROVALS, NODES, RUN_VERSIONS, RUNS
from schemas.events import RunForked, RunSubmitted, WorkflowPublished

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    new_events: int
    duplicates: int
    poison: int
    runs_changed: frozenset[str]


def _split_new(batch_events: list[Positioned], seen: set[str]) -> tuple[list[Positioned], int]:
    """Events not seen before, first copy only, in log order; and how many were dropped."""
    fresh = []
    for pe in batch_events:
        if pe.event.event_id not in seen:
            seen.add(pe.event.event_id)
            fresh.append(pe)
    return fresh, len(batch_events) - len(fresh)


class _KnownRunStale(Exception):
    """A run known here had events in ``run_events`` that this projector did not write."""


async def apply_batch(
    conn: asyncpg.Connection,
    projection: str,
    batch: Batch,
    cas: JsonStore | None = None,
    known: KnownRuns | None = None,
) -> Applied:
    """Apply ``batch``; with ``cas``, also store the blobs of the versions it creates (a
    projector without one, such as a rebuild into a scratch schema, leaves them to the
    live projector: the blobs are the same by their hash). With ``known``, the runs it
    knows are not asked of PostgreSQL, and it learns the runs this batch starts."""
    learnt = Learnt()
    try:
        applied, new_runs = await _apply(conn, projection, batch, cas, known=known, learnt=learnt)
    except _KnownRunStale:  # rolled back: applied again, every run asked of PostgreSQL
        assert known is not None
        log.warning("a run known to the projector had events it did not write: forgetting")
        known.forget()
        learnt = Learnt()
        applied, new_runs = await _apply(conn, projection, batch, cas, known=None, learnt=learnt)
    if known is not None:
        known.commit(learnt, new_runs)
    return applied


async def _apply(
    conn: asyncpg.Connection,
    projection: str,
    batch: Batch,
    cas: JsonStore | None,
    *,
    known: KnownRuns | None,
    learnt: Learnt,
) -> tuple[Applied, set[str]]:
    async with conn.transaction():
        await lock_batches(conn)
        await _poison(conn, batch)
        # By the event's own name, not the topic's: topics may carry a prefix (tests, rebuilds).
        wf_events = [pe for pe in batch.events if pe.event.type.startswith("workflow.")]
        run_events = [pe for pe in batch.events if not pe.event.type.startswith("workflow.")]
        new_wf, dup_wf = await _workflows(conn, wf_events)
        new_run, dup_run, changed, new_runs = await _runs(conn, run_events, cas, known, learnt)
        await store_offsets(conn, projection, batch.next_offsets)
        # Delivered at commit, and only if it commits; one per run and batch (NOTIFY takes a
        # global lock at commit, so it is coalesced).
        if changed:
            await conn.execute(
                "SELECT pg_notify($1, r) FROM unnest($2::text[]) AS r", RUN_CHANNEL, sorted(changed)
            )
        await conn.execute("SELECT pg_notify($1, $2)", PROGRESS_CHANNEL, projection)
    applied = Applied(new_wf + new_run, dup_wf + dup_run, len(batch.poison), frozenset(changed))
    return applied, new_runs


async def _poison(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.poison:
        await conn.executemany(
            """INSERT INTO projection_poison (topic, partition, "offset", reason)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [
                (p.position.topic, p.position.partition, p.position.offset, p.reason)
                for p in batch.poison
            ],
        )


# --- workflows -------------------------------------------------------------------------


async def _workflows(conn: asyncpg.Connection, events: list[Positioned]) -> tuple[int, int]:
    if not events:
        return 0, 0
    ids = [pe.event.event_id for pe in events]
    seen = {
        r["event_id"]
        for r in await conn.fetch(
            "SELECT event_id FROM workflow_events WHERE event_id = ANY($1::text[])", ids
        )
    }
    fresh, dropped = _split_new(events, seen)
    published = [pe for pe in fresh if isinstance(pe.event, WorkflowPublished)]
    if fresh:
        await conn.executemany(
            """INSERT INTO workflow_events
                 (event_id, workflow_id, type, occurred_at, kafka_partition, kafka_offset)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
            [
                (
                    e.event_id,
                    e.aggregate_id,
                    e.type,
                    e.occurred_at,
                    pe.position.partition,
                    pe.position.offset,
                )
                for pe in fresh
                for e in [pe.event]
            ],
        )
    if published:
        events = [pe.event for pe in published if isinstance(pe.event, WorkflowPublished)]
        keys = sorted({key_of(ev) for ev in events})
        # Loaded by (tenant, id): an event never sees, let alone folds into, a row of
        # another tenant that has the same id.
        rows = {
            (r["tenant"], r["workflow_id"]): WorkflowRow(**dict(r))
            for r in await conn.fetch(
                """SELECT workflow_id, tenant, name, latest_version, created_at, updated_at
                   FROM workflows WHERE (tenant, workflow_id) IN
                     (SELECT * FROM unnest($1::text[], $2::text[]))""",
                [tenant for tenant, _ in keys],
                [workflow_id for _, workflow_id in keys],
            )
        }
        versions: dict[VersionKey, VersionRow] = {}
        for ev in events:
            fold_published(rows, versions, ev)
        await conn.executemany(
            """INSERT INTO workflows
                 (workflow_id, tenant, name, latest_version, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant, workflow_id) DO UPDATE SET name = EXCLUDED.name,
                 latest_version = EXCLUDED.latest_version, updated_at = EXCLUDED.updated_at""",
            [
                (w.workflow_id, w.tenant, w.name, w.latest_version, w.created_at, w.updated_at)
                for w in rows.values()
            ],
        )
        await conn.executemany(
            """INSERT INTO workflow_versions (tenant, workflow_id, version, definition,
                                              definition_ref, ir_ref, published_at, event_id)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8)
               ON CONFLICT (tenant, workflow_id, version) DO NOTHING""",
            [
                (
                    v.tenant,
                    v.workflow_id,
                    v.version,
                    v.definition_json,
                    v.definition_ref,
                    v.ir_ref,
                    v.published_at,
                    v.event_id,
                )
                for v in versions.values()
            ],
        )
    return len(fresh), dropped


# --- runs ------------------------------------------------------------------------------


async def _load_fold(conn: asyncpg.Connection, run_ids: list[str], patch_ids: list[str]) -> RunFold:
    fold = RunFold()
    of_runs = "run_id = ANY($1::text[])"
    for run in await RUNS.fetch(conn, of_runs, run_ids):
        fold.runs[run.run_id] = run
    for node in await NODES.fetch(conn, of_runs, run_ids):
        fold.add_node(node)
    for approval in await APPROVALS.fetch(conn, of_runs, run_ids):
        fold.approvals[(approval.run_id, approval.node_id)] = approval
    if patch_ids:  # only the patches this batch's events touch
        await load_patches(conn, fold, run_ids, patch_ids)
    return fold


async def _runs(
    conn: asyncpg.Connection,
    events: list[Positioned],
    cas: JsonStore | None,
    known: KnownRuns | None,
    learnt: Learnt,
) -> tuple[int, int, set[str], set[str]]:
    """Apply the run events; returns how many were new and seen before, the runs changed,
    and the runs whose first event this batch wrote."""
    if not events:
        return 0, 0, set(), set()
    seen, last_seq, new_runs = await _history(conn, events, known)
    fresh, dropped = _split_new(events, seen)
    if not fresh:
        return 0, dropped, set(), set()
    # Rows too for a run with no event written: a run.submitted that was parked leaves a
    # placeholder row (projections.parking), which the run's later events change.
    run_ids = sorted({pe.event.aggregate_id for pe in fresh})
    fold = await _load_fold(conn, run_ids, patch_ids_of(fresh))
    history = []
    for pe in fresh:
        ev = pe.event
        fold.apply(ev)
        last_seq[ev.aggregate_id] += 1
        learnt.wrote(ev.aggregate_id, last_seq[ev.aggregate_id], ev.event_id)
        run_status, node_id, node_status = fold.status_after(ev)
        history.append(
            (
                ev.aggregate_id,
                last_seq[ev.aggregate_id],
                ev.event_id,
                ev.type,
                ev.occurred_at,
                pe.position.partition,
                pe.position.offset,
                ev.causation_id,
                ev.actor.model_dump_json(),
                ev.payload.model_dump_json(),
                run_status,
                node_id,
                node_status,
            )
        )
    inserted = await conn.execute(
        """INSERT INTO run_events (run_id, seq, event_id, type, occurred_at, kafka_partition,
                                   kafka_offset, causation_id, actor, payload, run_status,
                                   node_id, node_status)
           SELECT r, s, e, t, o, p, k, c, a::jsonb, y::jsonb, rs, n, ns
           FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[],
                       $6::int[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                       $11::text[], $12::text[], $13::text[])
                AS x(r, s, e, t, o, p, k, c, a, y, rs, n, ns)
           ON CONFLICT DO NOTHING""",
        *map(list, zip(*history, strict=True)),
    )
    if known is not None and _rows_of(inserted) != len(history):  # an id or seq was taken
        raise _KnownRunStale
    # The rows were read under the batch lock and folded here: they replace what is stored.
    await RUNS.write(conn, [fold.runs[r] for r in sorted(fold.changed_runs)])
    await _write_forks(conn, fold.forks)
    await NODES.write(conn, [fold.nodes[k] for k in sorted(fold.changed_nodes)])
    await APPROVALS.write(conn, [fold.approvals[k] for k in sorted(fold.changed_approvals)])
    await delete_nodes(conn, sorted(fold.removed_nodes))
    await PATCHES.write(conn, [fold.patches[k] for k in sorted(fold.changed_patches)])
    await RUN_VERSIONS.write(conn, fold.new_versions)
    if cas is not None:
        await store_blobs(cas, fold.blobs)
    return len(fresh), dropped, fold.changed_runs, new_runs


async def _history(
    conn: asyncpg.Connection, events: list[Positioned], known: KnownRuns | None
) -> tuple[set[str], defaultdict[str, int], set[str]]:
    """Of ``events``' runs: the ids among ``events`` already written, each run's last
    ``seq``, and the runs that have no event written yet.

    With ``known``, the runs it knows are answered from it, and so is a run whose start
    (its run.submitted or run.forked) is in ``events``: it is taken to have no event
    written yet. Either belief is checked by the insert of the events (``_KnownRunStale``:
    a run with events written has a ``seq`` 1 taken). The other runs are asked of
    PostgreSQL."""
    seen: set[str] = set()
    last_seq: defaultdict[str, int] = defaultdict(int)
    starting: set[str] = set()
    if known is not None:
        starting = {
            pe.event.aggregate_id
            for pe in events
            if isinstance(pe.event, RunSubmitted | RunForked)
            and known.get(pe.event.aggregate_id) is None
        }
    ask_ids: list[str] = []
    ask_runs: set[str] = set()
    for pe in events:
        ev = pe.event
        run = known.get(ev.aggregate_id) if known is not None else None
        if run is not None:
            last_seq[ev.aggregate_id] = run.last_seq
            if ev.event_id in run.event_ids:
                seen.add(ev.event_id)
        elif ev.aggregate_id not in starting:
            ask_ids.append(ev.event_id)
            ask_runs.add(ev.aggregate_id)
    if ask_ids:
        seen |= {
            r["event_id"]
            for r in await conn.fetch(
                "SELECT event_id FROM run_events WHERE event_id = ANY($1::text[])", ask_ids
            )
        }
    new_runs = starting | ask_runs
    if ask_runs:
        for r in await conn.fetch(
            "SELECT run_id, max(seq) AS seq FROM run_events"
            " WHERE run_id = ANY($1::text[]) GROUP BY run_id",
            sorted(ask_runs),
        ):
            last_seq[r["run_id"]] = r["seq"]
            new_runs.discard(r["run_id"])
    return seen, last_seq, new_runs


def _rows_of(status: str) -> int:
    """The row count of a command's status (``INSERT 0 12``)."""
    return int(status.rsplit(" ", 1)[-1])


async def _write_forks(conn: asyncpg.Connection, rows: list[ForkRow]) -> None:
    """The ``forked_*`` columns of forks made in this batch (their rows are written)."""
    if rows:
        await conn.executemany(
            "UPDATE runs SET forked_from = $2, forked_at = $3, forked_at_seq = $4"
            " WHERE run_id = $1",
            [(f.run_id, f.forked_from, f.forked_at, f.forked_at_seq) for f in rows],
        )
