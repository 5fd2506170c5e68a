"""One settings object for the whole deployment, read from ``AOB_*`` environment variables.

Every service reads the endpoints of Kafka, Postgres and MinIO from here, so that the local
stack, docker compose and a user's own servers are chosen in one place. Defaults sit away
from the standard ports (9092, 5432, 9000) so that a user's own servers are left alone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    # PostgreSQL refuses to run as root, so as root the stack runs it as an unprivileged
    # user; that user must be able to reach the data folder, which /root does not allow.
    if os.geteuid() == 0:
        return Path("/var/lib/aob")
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg) / "aob" if xdg else Path.home() / ".local" / "share" / "aob"


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "aob" if xdg else Path.home() / ".cache" / "aob"


class Settings(BaseSettings):
    """Deployment settings. Each field is ``AOB_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AOB_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="All stack data lives here.")
    cache_dir: Path = Field(
        default_factory=_default_cache, description="Downloads and builds, kept between stacks."
    )
    host: str = Field("127.0.0.1", description="Address every local server listens on.")

    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    postgres_port: int = 15432
    minio_port: int = 19000
    minio_console_port: int = 19001
    command_api_port: int = 18080
    query_api_port: int = 18081
    # Prometheus text of the services without an HTTP port of their own (0: none served).
    coordinator_metrics_port: int = 18082
    workers_metrics_port: int = 18083
    projections_metrics_port: int = 18084
    scripted_llm_port: int = Field(
        18090, description="The local scripted model, run when no OPENAI_API_KEY is set."
    )

    # Point these at servers you run yourself (or that docker compose runs); when unset they
    # are derived from the local stack's host and ports.
    kafka_bootstrap_servers: str | None = None
    postgres_dsn_override: str | None = Field(None, alias="AOB_POSTGRES_DSN")
    minio_endpoint_override: str | None = Field(None, alias="AOB_MINIO_ENDPOINT")

    postgres_user: str = "aob"
    postgres_password: str = "aob"
    postgres_db: str = "aob"
    minio_access_key: str = "aob-admin"
    minio_secret_key: str = "aob-admin-secret"
    minio_bucket: str = "aob-cas"
    # Seals tenants' secrets (secret_store.crypto): one Fernet key, or several separated by
    # commas (the first seals, all open). Unset: a key file generated once under ``home``.
    secrets_key: SecretStr | None = None

    kafka_version: str = "3.9.1"
    # The community MinIO server ships as source only; this pseudo-version pins one commit.
    minio_version: str = "v0.0.0-20260212201848-7aac2a2c5b7c"
    topic_partitions: int = Field(4, ge=1)
    gc_gen0: int = Field(
        50_000,
        ge=1,
        description="Net allocations between two passes of the garbage collector over its "
        "youngest generation, in every AOB service, which also freezes what it built at "
        "start-up (infra.gc_tuning); 700 keeps CPython's defaults.",
    )
    # Which instance of its service this process is (infra.instances): 1 unless
    # `aob up --scale` started several.
    instance: int = Field(1, ge=1)
    # How deep subworkflow nodes may nest runs (``run_submission``): a run submitted from
    # outside is at depth 0, its children at 1, and a start deeper than this is refused.
    max_subworkflow_depth: int = Field(
        8, ge=0, le=100, description="The deepest a subworkflow node's child run may be."
    )

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.host}:{self.kafka_port}"

    @property
    def postgres_dsn(self) -> str:
        if self.postgres_dsn_override:
            return self.postgres_dsn_override
        return (
            f"postgresql://{self.postgres_user}:{self.postgres_password}"
            f"@{self.host}:{self.postgres_port}/{self.postgres_db}"
        )

    @property
    def minio_endpoint(self) -> str:
        """``host:port`` of the S3 endpoint (no scheme, as the minio client wants it)."""
        return self.minio_endpoint_override or f"{self.host}:{self.minio_port}"

    @property
    def command_api_url(self) -> str:
        return f"http://{self.host}:{self.command_api_port}"

    @property
    def query_api_url(self) -> str:
        return f"http://{self.host}:{self.query_api_port}"

    @property
    def scripted_llm_url(self) -> str:
        # Always loopback: the scripted model has no authentication (infra.scripted_llm).
        return f"http://127.0.0.1:{self.scripted_llm_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
