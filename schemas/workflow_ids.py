"""Workflow ids: what a name or an id given by a client stands for, within one tenant.

A workflow's id is derived from (tenant, name), so a name resolves without a lookup. A
client may also name a workflow by its id, which is a UUID; so that a name can never be
read as an id, a name that ``uuid.UUID`` accepts in any of its spellings (upper case,
braces, ``urn:uuid:``, no dashes, …) is refused at publish. An id is only ever looked up
among the caller's tenant's workflows: ids are derivable by anyone, so an id alone must
never reach another tenant's workflow.
"""

from __future__ import annotations

import uuid

from schemas.envelope import deterministic_id


def as_uuid(text: str) -> str | None:
    """The canonical spelling of ``text`` if ``uuid.UUID`` accepts it, else None."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def uuid_name_refusal(name: str) -> str | None:
    """Why ``name`` cannot name a workflow (it reads as an id), or None if it can."""
    spelled = as_uuid(name)
    if spelled is None:
        return None
    return (
        f"a workflow name must not be shaped like a UUID ({spelled}): a UUID given for a "
        "workflow is read as its id; choose another name"
    )


def workflow_id_for(tenant: str, name_or_id: str) -> str:
    """The id of the tenant's workflow ``name_or_id``: a UUID is taken as the id itself
    (the caller then looks it up among ``tenant``'s workflows only), any other text as a
    name, whose id is derived from (tenant, name)."""
    return as_uuid(name_or_id) or deterministic_id("workflow", tenant, name_or_id)
