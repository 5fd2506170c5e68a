"""The GraphQL side of patching a live run: ``Run.patches`` and ``Run.versions``.

Both are loaded per request with a DataLoader, like nodes: a page of runs costs one query
for all their patches and one for all their versions, not one per run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON

from query_api import db


@strawberry.type(description="Who proposed a patch.")
class PatchAuthor:
    kind: str = strawberry.field(description="`user` (an API key) or `agent` (a node).")
    id: str = strawberry.field(description="The API key id, or `run/node` of the agent.")


@strawberry.type(description="A JSON Patch proposed to a run, and the coordinator's verdict.")
class Patch:
    id: str = strawberry.field(description="The patch id (its run.patch_submitted event id).")
    status: str = strawberry.field(description="SUBMITTED APPLIED REJECTED")
    reason: str = strawberry.field(description="Why the author wants the change.")
    ops: JSON = strawberry.field(description="The RFC 6902 operations, as submitted.")
    from_version: str | None = strawberry.field(description="The version it was applied to.")
    to_version: str | None = strawberry.field(description="The version it made.")
    base_version: str | None = strawberry.field(
        description="The version the author wrote it against, if given."
    )
    rejected_reasons: list[str] = strawberry.field(
        description="Every rule a rejected patch breaks, in words to act on."
    )
    submitted_by: PatchAuthor | None
    node_id: str | None = strawberry.field(description="The agent node that proposed it.")
    submitted_at: datetime | None
    decided_at: datetime | None
    added_nodes: list[str]
    removed_nodes: list[str]
    changed_nodes: list[str]

    @staticmethod
    def of(r: Any) -> Patch:
        author = None
        if r["submitted_by"] is not None:
            author = PatchAuthor(kind=r["actor_kind"] or "", id=r["submitted_by"])
        return Patch(
            id=r["patch_id"],
            status=r["status"],
            reason=r["reason"] or "",
            ops=r["ops"] if r["ops"] is not None else [],
            from_version=r["from_version"],
            to_version=r["to_version"],
            base_version=r["base_version"],
            rejected_reasons=r["rejected_reasons"],
            submitted_by=author,
            node_id=r["node_id"],
            submitted_at=r["submitted_at"],
            decided_at=r["decided_at"],
            added_nodes=r["added_nodes"],
            removed_nodes=r["removed_nodes"],
            changed_nodes=r["changed_nodes"],
        )


@strawberry.type(description="One version in a run's chain: the submitted one, then each patch's.")
class RunVersion:
    seq: int = strawberry.field(description="0 for the version the run was submitted with.")
    version: str
    definition: JSON
    definition_ref: str
    ir_ref: str
    patch_id: str | None = strawberry.field(description="The patch that made it (not for 0).")
    from_version: str | None
    created_at: datetime

    @staticmethod
    def of(r: Any) -> RunVersion:
        return RunVersion(
            seq=r["seq"],
            version=r["version"],
            definition=r["definition"],
            definition_ref=r["definition_ref"],
            ir_ref=r["ir_ref"],
            patch_id=r["patch_id"],
            from_version=r["from_version"],
            created_at=r["created_at"],
        )


def patches_loader(pool: Any) -> DataLoader[str, list[Patch]]:
    """Every run's patches, in log order, in one query per request."""

    async def load(run_ids: list[str]) -> list[list[Patch]]:
        by_run: dict[str, list[Patch]] = {r: [] for r in run_ids}
        for r in await db.patches_of_runs(pool, run_ids):
            by_run[r["run_id"]].append(Patch.of(r))
        return [by_run[r] for r in run_ids]

    return DataLoader(load_fn=load)


def versions_loader(pool: Any) -> DataLoader[str, list[RunVersion]]:
    """Every run's chain of versions, oldest first, in one query per request."""

    async def load(run_ids: list[str]) -> list[list[RunVersion]]:
        by_run: dict[str, list[RunVersion]] = {r: [] for r in run_ids}
        for r in await db.versions_of_runs(pool, run_ids):
            by_run[r["run_id"]].append(RunVersion.of(r))
        return [by_run[r] for r in run_ids]

    return DataLoader(load_fn=load)
