"""A coordinator of its own for a test module: fresh topics, consumer group and changelog.

The coordinator runs as ``python -m processors`` in a subprocess, pointed at fresh names by
``AOB_COORDINATOR_*``, so that neither the running system's coordinator nor its workers ever
see the tests' runs and tasks (and the tests see none of theirs). Its log is kept in a file
and printed when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from infra.kafka_admin import ensure_topics
from infra.settings import Settings
from processors.config import CoordinatorConfig
from schemas.topics import TopicSpec

REPO = Path(__file__).resolve().parents[2]
TASK_TYPES_USED = ("noop", "transform", "http")


@dataclass
class Isolated:
    settings: Settings
    config: CoordinatorConfig
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="module")
async def isolated(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Isolated]:
    tag = uuid.uuid4().hex[:10]
    config = CoordinatorConfig(
        app_id=f"test-{tag}-coordinator",
        runs_topic=f"test-{tag}.runs.events",
        task_topic_prefix=f"test-{tag}.tasks.",
        dlq_topic=f"test-{tag}.dlq",
        stats_interval_s=1.0,
    )
    n = stack.topic_partitions
    await ensure_topics(
        stack.kafka_bootstrap,
        [TopicSpec(config.runs_topic, n), TopicSpec(config.dlq_topic, 1)]
        + [TopicSpec(config.task_topic(t), n) for t in TASK_TYPES_USED],
    )
    log_path = tmp_path_factory.mktemp("coordinator") / "coordinator.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AOB_COORDINATOR_APP_ID": config.app_id,
        "AOB_COORDINATOR_RUNS_TOPIC": config.runs_topic,
        "AOB_COORDINATOR_TASK_TOPIC_PREFIX": config.task_topic_prefix,
        "AOB_COORDINATOR_DLQ_TOPIC": config.dlq_topic,
        "AOB_COORDINATOR_STATS_INTERVAL_S": "1",
        # Timers in these tests are short: fire them promptly, with a small grace.
        "AOB_COORDINATOR_TIMER_INTERVAL_S": "0.1",
        "AOB_COORDINATOR_TIMEOUT_GRACE_S": "0.5",
    }
    iso = Isolated(stack, config, log_path, env)
    iso.start()
    try:
        yield iso
    finally:
        stop(iso.process)


@pytest.fixture
async def producer(isolated: Isolated) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=isolated.settings.kafka_bootstrap, acks="all", linger_ms=1
    )
    await p.start()
    yield p
    await p.stop()


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> int | None:
    """SIGTERM (a clean stop), then SIGKILL if it does not stop in time."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def attach_coordinator_log(item: pytest.Item, report: pytest.TestReport) -> None:
    """Adds the isolated coordinator's log to the report of a failed test that used it."""
    iso = getattr(item, "funcargs", {}).get("isolated")
    if report.when == "call" and report.failed and isinstance(iso, Isolated):
        report.sections.append(("coordinator log", iso.log_text()[-20000:]))


def wait_for_log(iso: Isolated, needle: str, timeout: float = 60.0, times: int = 1) -> None:
    """Until ``needle`` is in the log ``times`` times (the log spans every restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if iso.log_text().count(needle) >= times:
            return
        if iso.process is not None and iso.process.poll() is not None:
            raise AssertionError(f"the coordinator exited:\n{iso.log_text()[-5000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in the coordinator's log after {timeout}s")
