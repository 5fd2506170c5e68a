"""The query API's own settings (``AOB_QUERY_API_…``); host, port and DSN come from infra."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from read_model.offsets import DEFAULT_PROJECTION


class QueryApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOB_QUERY_API_", extra="ignore")

    read_schema: str | None = Field(
        default=None,
        description="Postgres schema holding the read models (a rebuilt copy, or a test's); "
        "default: the search path's (public).",
    )
    projection: str = Field(
        default=DEFAULT_PROJECTION,
        description="Name under which the projector stores its offsets; `after:` waits on it.",
    )
    catch_up_timeout_s: float = Field(default=10.0, description="How long `after:` waits, at most.")
    max_body_bytes: int = Field(default=256 * 1024, description="Larger request bodies get a 413.")
    pool_max_size: int = 10
    console_dir: Path | None = Field(
        default=None,
        description="The console's built bundle (default: the repository's console/dist).",
    )
    console_command_api_url: str | None = Field(
        default=None,
        description="The command API's URL as the console's browser reaches it (default: "
        "the host the browser loaded the console from, with the command API's port).",
    )
    max_subscriptions_per_connection: int = Field(
        default=20,
        ge=1,
        description="Operations one WebSocket may have running at once; one more is refused "
        "with an error message.",
    )
    max_subscriptions_per_tenant: int = Field(
        default=200,
        ge=1,
        description="Subscriptions one tenant may have open at once across this process, on "
        "every socket; one more is refused with an error naming the limit.",
    )
    max_query_cost: int = Field(
        default=50_000,
        ge=1,
        description="The most an operation may cost (query_api/cost.py: weights per field, "
        "multiplied by page sizes); a costlier one is refused with its cost and the limit.",
    )
    introspection: bool = Field(
        default=True, description="Whether the schema may be introspected (GraphiQL needs it)."
    )
    rate_per_second: float = Field(
        default=200.0, gt=0, description="Sustained HTTP queries per tenant (per process)."
    )
    rate_burst: int = Field(
        default=400, ge=1, description="HTTP queries a tenant may send at once (per process)."
    )
