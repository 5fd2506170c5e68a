"""The worker process's settings, read from the environment.

Topic names default to the deployment's (``schemas.topics``); they can be pointed elsewhere
so that a second set of workers can share one Kafka cluster with another coordinator (the
connected tests do this with fresh names, as with ``AOB_COORDINATOR_*``).

The http node's and the agent node's settings live here too: the names are part of the public
surface (API.md): ``AOB_HTTP_ALLOWLIST``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import RUN_EVENTS, TASK_TOPIC_PREFIX
from workers.outputs import DEFAULT_MAX_OUTPUT_BYTES
from workers.start_report import DEFAULT_REPORT_START_AFTER_S


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOB_WORKERS_", extra="ignore")

    runs_topic: str = Field(RUN_EVENTS, description="Where outcomes are appended.")
    task_topic_prefix: str = Field(TASK_TOPIC_PREFIX, description="Tasks: <prefix><type>.")
    group_prefix: str = Field("aob-workers-", description="Consumer group: <prefix><type>.")
    max_output_bytes: int = Field(
        DEFAULT_MAX_OUTPUT_BYTES,
        ge=1,
        description="A node output larger than this, as canonical JSON, fails the node "
        "(workers.outputs): the CAS holds large outputs, not unbounded ones.",
    )

    report_start_after_ms: float = Field(
        DEFAULT_REPORT_START_AFTER_S * 1000,
        ge=0,
        le=60_000,
        description="An attempt still running after this long sends its run.node_started; "
        "a quicker one tells its start with its outcome (workers.start_report). 0: every "
        "start is sent as the attempt starts.",
    )

    # --- fair execution (workers.fair) -------------------------------------------------
    max_waiting: int = Field(
        10_000,
        ge=1,
        description="Tasks taken from Kafka that may wait to start in one process; past it "
        "the consumers pause fetching until they drain (aob_workers_fetch_paused).",
    )
    max_waiting_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="The same bound on the waiting tasks' size (their encoded records).",
    )
    lease_ttl_s: float = Field(
        30.0,
        ge=3,
        le=3600,
        description="How long a concurrency key's slot stays held without renewal: a dead "
        "worker's slots free themselves after it.",
    )
    key_retry_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How soon a full concurrency key is tried again (at once when a task of "
        "this process gives one of its slots back).",
    )

    # --- http node --------------------------------------------------------------------
    http_allowlist: str = Field(
        "",
        validation_alias=AliasChoices("AOB_HTTP_ALLOWLIST"),
        description="Comma-separated host:port targets let through although not global "
        "(local test servers, demos). Empty: only globally routable addresses.",
    )
    http_max_response_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        validation_alias=AliasChoices("AOB_HTTP_MAX_RESPONSE_BYTES"),
        description="A response body larger than this fails the node.",
    )
    http_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias=AliasChoices("AOB_HTTP_TIMEOUT_S"),
        description="Time limit of an http node's exchange whose config sets no timeout_s.",
    )

    @field_validator("http_allowlist")
    @classmethod
    def _allowlist_parses(cls, value: str) -> str:
        # A typo must stop the worker at start, not surface as refusals in runs.
        from workers.http.targets import parse_allowlist

        parse_allowlist(value)
        return value

    # --- agent node -------------------------------------------------------------------
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL"),
        description="Any OpenAI-compatible endpoint; the SDK's default when unset.",
    )
    openai_api_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    agent_model: str = Field(
        "gpt-4o-mini",
        validation_alias=AliasChoices("AOB_AGENT_MODEL"),
        description="The model of an agent node that names none.",
    )

    def task_topic(self, node_type: str) -> str:
        return f"{self.task_topic_prefix}{node_type}"
