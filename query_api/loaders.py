"""Per-request DataLoaders: what hangs off a run (nodes, patches, versions, approvals, a page
of events) is read for every run of a request in one query, not one query per run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from query_api import db
from query_api.approval_types import Approval
from query_api.node_types import Node
from query_api.patch_types import Patch, RunVersion

T = TypeVar("T")


def _by_run(
    fetch: Callable[[Sequence[str]], Awaitable[Sequence[Any]]], of: Callable[[Any], T]
) -> DataLoader[str, list[T]]:
    """A loader of each run's ``of(row)`` for the rows ``fetch`` reads for many runs at once
    (each with a ``run_id``), in the order ``fetch`` returns them."""

    async def load(run_ids: list[str]) -> list[list[T]]:
        by_run: dict[str, list[T]] = {r: [] for r in run_ids}
        for r in await fetch(run_ids):
            by_run[r["run_id"]].append(of(r))
        return [by_run[r] for r in run_ids]

    return DataLoader(load_fn=load)


def nodes_loader(pool: Any) -> DataLoader[str, list[Node]]:
    """Every run's nodes, in scheduling order."""
    return _by_run(partial(db.nodes_of_runs, pool), Node.of)


def patches_loader(pool: Any) -> DataLoader[str, list[Patch]]:
    """Every run's patches, in log order."""
    return _by_run(partial(db.patches_of_runs, pool), Patch.of)


def versions_loader(pool: Any) -> DataLoader[str, list[RunVersion]]:
    """Every run's chain of versions, oldest first."""
    return _by_run(partial(db.versions_of_runs, pool), RunVersion.of)


def approvals_loader(pool: Any) -> DataLoader[str, list[Approval]]:
    """Every run's approvals, in request order."""
    return _by_run(partial(db.approvals_of_runs, pool), Approval.of)


# A page of a run's events: (run_id, limit, after_seq).
EventsKey = tuple[str, int, int]


def events_loader(pool: Any) -> DataLoader[EventsKey, list[Any]]:
    """Pages of events (rows), one query per distinct (limit, after) among the request's
    runs: a page of runs asking ``events(first: n)`` alike costs one query, not one per run."""

    async def load(keys: list[EventsKey]) -> list[list[Any]]:
        groups: dict[tuple[int, int], list[str]] = defaultdict(list)
        for run_id, limit, after_seq in keys:
            groups[(limit, after_seq)].append(run_id)
        pages: dict[EventsKey, list[Any]] = {k: [] for k in keys}
        for (limit, after_seq), run_ids in groups.items():
            for r in await db.events_pages(pool, run_ids, limit, after_seq):
                pages[(r["run_id"], limit, after_seq)].append(r)
        return [pages[k] for k in keys]

    return DataLoader(load_fn=load)
