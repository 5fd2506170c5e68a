"""The projector's own settings (``AOB_PROJECTIONS_*``), on top of the shared Settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from projections.runner import DEFAULT_BATCH_EVERY_S


class ProjectionsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOB_PROJECTIONS_", extra="ignore")

    batch_every_ms: float = Field(
        DEFAULT_BATCH_EVERY_S * 1000,
        ge=0,
        le=10_000,
        description="A projector begins a batch (one transaction) at most this often, so "
        "that a steady flow of events is written in batches, not one small transaction "
        "each (projections.runner). 0: each fetch is written as it comes.",
    )
