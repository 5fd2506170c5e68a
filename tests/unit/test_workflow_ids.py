"""Workflow ids: derived from (tenant, name), never confused with a name, never the same
for two tenants."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas import PublishWorkflow
from schemas.workflow_ids import as_uuid, uuid_name_refusal, workflow_id_for

CANONICAL = "0b8a3c4e-1f2d-5a6b-8c9d-0e1f2a3b4c5d"
# Every spelling uuid.UUID accepts for CANONICAL, the odd ones included (its parser strips
# "urn:" and "uuid:" anywhere, braces at the ends, every dash, then reads base-16 as int()
# does: a sign, a 0x prefix or an underscore between digits pass).
SPELLINGS = [
    CANONICAL,
    CANONICAL.upper(),
    "{" + CANONICAL + "}",
    "urn:uuid:" + CANONICAL,
    "uuid:" + CANONICAL,
    CANONICAL.replace("-", ""),
    "0b8a-3c4e1f2d5a6b8c9d0e1f2a3b4c5d",
    "+b8a3c4e1f2d5a6b8c9d0e1f2a3b4c5d",
]
# Accepted too, as other UUIDs: names that look like nothing of the kind to a person.
ODD = ["0x8a3c4e1f2d5a6b8c9d0e1f2a3b4c5d", "0b8a3c4e_f2d5a6b8c9d0e1f2a3b4c5d"]


@pytest.mark.parametrize("text", SPELLINGS)
def test_every_spelling_of_a_uuid_is_read_as_that_id(text: str) -> None:
    assert as_uuid(text) == CANONICAL
    assert workflow_id_for("acme", text) == CANONICAL
    assert workflow_id_for("other", text) == CANONICAL  # looked up in the caller's tenant


@pytest.mark.parametrize("text", SPELLINGS + ODD)
def test_a_name_uuid_accepts_is_refused_at_publish(text: str) -> None:
    refusal = uuid_name_refusal(text)
    assert refusal is not None and str(as_uuid(text)) in refusal
    with pytest.raises(ValidationError, match="must not be shaped like a UUID"):
        PublishWorkflow.model_validate({"name": text, "definition": {"nodes": []}})


@pytest.mark.parametrize(
    "name", ["invoices", "0b8a3c4e", CANONICAL.replace("-", "")[:-1], "g" * 32, CANONICAL + "x"]
)
def test_other_names_are_names(name: str) -> None:
    assert as_uuid(name) is None and uuid_name_refusal(name) is None


def test_a_name_is_derived_per_tenant_and_stays_what_it_was() -> None:
    # The derivation is fixed: ids already in the log and the registry must keep resolving.
    assert workflow_id_for("acme", "invoices") == "8146c388-8023-57bd-b073-dfd2d04ced87"
    assert workflow_id_for("acme", "invoices") != workflow_id_for("globex", "invoices")
    assert workflow_id_for("acme", "invoices") != workflow_id_for("acme", "invoices2")
