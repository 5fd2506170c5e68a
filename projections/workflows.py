"""WorkflowPublished -> rows of ``workflows`` and ``workflow_versions`` (pure).

``latest_version`` is the version of the newest publication in log order; a version's row is
written once (versions are immutable: the same hash is the same definition).

Rows are keyed by (tenant, workflow_id), the tenant being the publishing actor's: an event
of one tenant never changes another's row, even one that carries the other's id (the log
may hold such events from before ids were scoped by tenant).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from schemas.events import WorkflowPublished

WorkflowKey = tuple[str, str]  # (tenant, workflow_id)
VersionKey = tuple[str, str, str]  # (tenant, workflow_id, version)


@dataclass
class WorkflowRow:
    workflow_id: str
    tenant: str
    name: str
    latest_version: str
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> WorkflowKey:
        return (self.tenant, self.workflow_id)


@dataclass(frozen=True)
class VersionRow:
    tenant: str
    workflow_id: str
    version: str
    definition_json: str
    definition_ref: str
    ir_ref: str
    published_at: datetime
    event_id: str


def key_of(ev: WorkflowPublished) -> WorkflowKey:
    """The row ``ev`` writes: its workflow, in the tenant of the actor who published it."""
    return (ev.actor.tenant, ev.payload.workflow_id)


def fold_published(
    rows: dict[WorkflowKey, WorkflowRow],
    versions: dict[VersionKey, VersionRow],
    ev: WorkflowPublished,
) -> None:
    p = ev.payload
    tenant, workflow_id = key = key_of(ev)
    row = rows.get(key)
    if row is None:
        rows[key] = WorkflowRow(
            workflow_id, tenant, p.name, p.version, ev.occurred_at, ev.occurred_at
        )
    else:
        row.name, row.latest_version = p.name, p.version
        row.updated_at = max(row.updated_at, ev.occurred_at)
    versions.setdefault(
        (tenant, workflow_id, p.version),
        VersionRow(
            tenant,
            workflow_id,
            p.version,
            json.dumps(p.definition),
            p.definition_ref,
            p.ir_ref,
            ev.occurred_at,
            ev.event_id,
        ),
    )
