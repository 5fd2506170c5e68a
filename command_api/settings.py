"""The command API's own limits, from ``AOB_COMMAND_API_*`` environment variables
(e.g. ``AOB_COMMAND_API_MAX_BODY_BYTES``); endpoints and ports come from ``infra.settings``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommandApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOB_COMMAND_API_", extra="ignore")

    max_body_bytes: int = Field(1024 * 1024, description="Largest request body accepted.")
    max_input_bytes: int = Field(256 * 1024, description="Largest run input (canonical JSON).")
    # A cheap first guard against floods, in each process, before any round trip; the
    # limits that are exact across processes are PostgreSQL's (``limits.admission_check``).
    rate_per_second: float = Field(500.0, description="Sustained requests per tenant.")
    rate_burst: int = Field(1000, description="Requests a tenant may send at once.")
    global_submissions_per_minute: int | None = Field(
        None,
        ge=0,
        description="Runs the whole deployment admits a sliding minute, of all tenants (unset: "
        "no such limit). Give every command API process the same value.",
    )
    idempotency_wait_s: float = Field(
        5.0, description="How long a repeated request waits for the first one's answer."
    )
    idempotency_ttl_hours: int = Field(24, description="How long Idempotency-Keys are kept.")
    webhook_window_s: int = Field(
        300,
        ge=1,
        description="A webhook delivery's X-AOB-Timestamp may be this far from the clock, and "
        "its signature is remembered as long (a second delivery with it is a replay).",
    )
    cors_origins: str | None = Field(
        None,
        description="Origins whose pages may call this API from a browser, comma-separated "
        "(unset: the query API's, where the console is served; empty: none). See cors.py.",
    )
