"""The row of ``run_patches``, with its rules, and the blobs a patch's version needs.

The patch row keeps its fold rules with it (``submitted``, ``decided``), so it stays here
rather than among the plain rows of ``read_model.rows``; its columns are still its fields
(``patch_store.PATCHES``). A patch row may be created by its verdict when the submission
was never seen (its record was poison): the submission fills in its own fields later and
never undoes the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import PatchApplied, PatchRejected, PatchSubmitted

SUBMITTED, APPLIED, REJECTED = "SUBMITTED", "APPLIED", "REJECTED"


@dataclass
class PatchRow:
    run_id: str
    patch_id: str
    seq: int  # run_events seq of the submission (else of the verdict): orders a run's patches
    status: str = SUBMITTED
    reason: str | None = None
    ops: list[Any] | None = None
    base_version: str | None = None
    submitted_by: str | None = None
    actor_kind: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    submitted_at: datetime | None = None
    decided_at: datetime | None = None
    from_version: str | None = None
    to_version: str | None = None
    current_version: str | None = None
    rejected_reasons: list[str] = field(default_factory=list)
    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    changed_nodes: list[str] = field(default_factory=list)
    agent_spawns: list[str] = field(default_factory=list)

    def submitted(self, ev: PatchSubmitted, seq: int) -> None:
        p = ev.payload
        self.seq = seq  # log order is the order of submission, also when the verdict came first
        self.reason, self.ops, self.base_version = p.reason, list(p.patch), p.base_version
        self.node_id, self.attempt = p.node_id, p.attempt
        self.submitted_by, self.actor_kind = ev.actor.id, ev.actor.kind
        self.submitted_at = ev.occurred_at

    def decided(self, ev: PatchApplied | PatchRejected) -> bool:
        """Record the verdict; False (and nothing changed) if one was recorded already."""
        if self.status != SUBMITTED:
            return False
        self.decided_at = ev.occurred_at
        if isinstance(ev, PatchApplied):
            p = ev.payload
            self.status, self.from_version, self.to_version = APPLIED, p.from_version, p.to_version
            self.added_nodes, self.removed_nodes = list(p.added_nodes), list(p.removed_nodes)
            self.changed_nodes, self.agent_spawns = list(p.changed_nodes), list(p.agent_spawns)
        else:
            self.status = REJECTED
            self.rejected_reasons = list(ev.payload.reasons)
            self.current_version = ev.payload.current_version
        return True


@dataclass(frozen=True)
class Blob:
    """A JSON value to store in the CAS, and the ref the event says it has."""

    expected_ref: str
    value: Any
    what: str  # for the log: "definition of version v… of run r…"
