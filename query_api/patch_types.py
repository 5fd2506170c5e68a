"""The GraphQL side of patching a live run: ``Run.patches`` and ``Run.versions``.

Both are loaded per request with a DataLoader (``loaders.py``), like nodes: a page of runs
costs one query for all their patches and one for all their versions, not one per run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from query_api.rows import from_row


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
        return from_row(
            Patch,
            r,
            id=r["patch_id"],
            reason=r["reason"] or "",
            ops=r["ops"] if r["ops"] is not None else [],
            submitted_by=author,
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
        return from_row(RunVersion, r)
