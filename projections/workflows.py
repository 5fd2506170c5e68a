"""WorkflowPublished -> rows of ``workflows`` and ``workflow_versions`` (pure).

``latest_version`` is the version of the newest publication in log order; a version's row is
written once (versions are immutable: the same hash is the same definition).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from schemas.events import WorkflowPublished


@dataclass
class WorkflowRow:
    workflow_id: str
    tenant: str
    name: str
    latest_version: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionRow:
    workflow_id: str
    version: str
    definition_json: str
    definition_ref: str
    ir_ref: str
    published_at: datetime
    event_id: str


def fold_published(
    rows: dict[str, WorkflowRow], versions: dict[tuple[str, str], VersionRow], ev: WorkflowPublished
) -> None:
    p = ev.payload
    row = rows.get(p.workflow_id)
    if row is None:
        rows[p.workflow_id] = WorkflowRow(
            p.workflow_id, ev.actor.tenant, p.name, p.version, ev.occurred_at, ev.occurred_at
        )
    else:
        row.name, row.latest_version = p.name, p.version
        row.updated_at = max(row.updated_at, ev.occurred_at)
    versions.setdefault(
        (p.workflow_id, p.version),
        VersionRow(
            p.workflow_id,
            p.version,
            json.dumps(p.definition),
            p.definition_ref,
            p.ir_ref,
            ev.occurred_at,
            ev.event_id,
        ),
    )
