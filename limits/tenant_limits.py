"""One tenant's limits, as one JSON document: a tenant with no row gets the defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from limits.admission import AdmissionLimits
from limits.budgets import AgentLimits
from limits.execution import ExecutionLimits


class TenantLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    admission: AdmissionLimits = AdmissionLimits()
    execution: ExecutionLimits = ExecutionLimits()
    agents: AgentLimits = AgentLimits()


DEFAULT_LIMITS = TenantLimits()
