"""Fixtures shared by every test suite.

``stack`` gives the Settings of a running Kafka + PostgreSQL + MinIO: the one already running
(``aob up``) when it is healthy, else the local stack started here (left running for the
next session; ``aob down`` stops it), else, on a machine with a Docker engine but without the
local stack's prerequisites, containers via testcontainers. No test replaces a server with a
fake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.settings import Settings
from infra.stack import MissingPrerequisite, Stack


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


def _containers(settings: Settings) -> tuple[Settings, list[object]]:
    """Redpanda, PostgreSQL and MinIO in containers; returns settings pointing at them."""
    from testcontainers.kafka import RedpandaContainer
    from testcontainers.minio import MinioContainer
    from testcontainers.postgres import PostgresContainer

    redpanda = RedpandaContainer().start()
    pg = PostgresContainer(
        "postgres:15",
        username=settings.postgres_user,
        password=settings.postgres_password,
        dbname=settings.postgres_db,
        driver=None,
    ).start()
    s3 = MinioContainer(
        access_key=settings.minio_access_key, secret_key=settings.minio_secret_key
    ).start()
    s3cfg = s3.get_config()
    overrides = {
        "kafka_bootstrap_servers": redpanda.get_bootstrap_server(),
        "AOB_POSTGRES_DSN": pg.get_connection_url(),
        "AOB_MINIO_ENDPOINT": s3cfg["endpoint"],
    }
    return Settings(**{**settings.model_dump(by_alias=False), **overrides}), [redpanda, pg, s3]


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Settings]:
    settings = Settings()
    local = Stack(settings)
    containers: list[object] = []
    if not await local.infra_healthy():
        try:
            await local.up(infra_only=True)
        except MissingPrerequisite:
            if not _docker_available():
                raise
            settings, containers = _containers(settings)
            await Stack(settings).up(infra_only=True)  # topics and bucket
    yield settings
    for container in reversed(containers):
        container.stop()  # type: ignore[attr-defined]


@pytest.fixture
def unique() -> str:
    """A fresh name part, so tests never see each other's topics, groups or objects."""
    return uuid.uuid4().hex


# --- figures: numbers a test measured, shown in the terminal summary ----------------------

FIGURES = pytest.StashKey[list[dict[str, Any]]]()


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Append a dict of figures (JSON-able) to have it printed under "figures" at the end."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(FIGURES, [])
    if rows:
        terminalreporter.section("figures")
        for row in rows:
            terminalreporter.write_line(json.dumps(row, default=str))
