"""``python -m processors``: run the coordinator until SIGTERM or SIGINT.

Prepares the topics faust may not create itself, then hands the process to faust's worker,
which stops the agent, commits what was processed and closes the producer on either signal.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import faust

from cas import ContentStore
from infra.event_loop import install as install_event_loop
from infra.gc_tuning import tune as tune_gc
from infra.heartbeat import beat
from infra.metrics import serve_metrics
from infra.settings import get_settings
from processors.agent import register
from processors.app import create_app
from processors.config import CoordinatorConfig
from processors.coordinator import Coordinator
from processors.metrics import REGISTRY
from processors.recovery import LogRecovery
from processors.schedule_clock import ScheduleClock
from processors.topics import TopicMismatch, prepare_topics
from schemas.envelope import utcnow
from schemas.topics import RUN_EVENTS

log = logging.getLogger("aob.coordinator")


def main() -> int:
    settings = get_settings()
    config = CoordinatorConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(prepare_topics(settings.kafka_bootstrap, config, settings.topic_partitions))
    except TopicMismatch as e:
        print(f"coordinator: {e}", file=sys.stderr)
        return 2
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    serve_metrics(settings, "coordinator", REGISTRY)
    parts = create_app(settings, config)
    recovery = LogRecovery(settings.kafka_bootstrap, config.runs_topic, utcnow, config.patch_limits)
    coordinator = Coordinator(
        parts, config, recover=recovery, read_range=recovery.read, recover_run=recovery.run
    )
    register(parts, coordinator)

    @parts.app.task
    async def heartbeat() -> None:
        await beat(settings, config.heartbeat_name)

    # Schedules start runs on the deployment's topics: only a coordinator of those fires
    # them (one pointed at other topics, as the tests' isolated ones are, does not).
    if config.runs_topic == RUN_EVENTS:
        schedules = ScheduleClock(
            settings.postgres_dsn,
            settings.kafka_bootstrap,
            ContentStore.from_settings(settings),
            utcnow,
            config.schedule_catch_up,
        )

        @parts.app.timer(config.schedule_interval_s)
        async def fire_schedules() -> None:
            try:
                await schedules.tick()
            except Exception:
                log.exception("schedule clock: the tick failed; the next one tries again")

    tune_gc(settings.gc_gen0)
    install_event_loop()
    # faust's worker needs an event loop of its own; asyncio.run above closed its loop.
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(parts.app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()  # returns when a signal has stopped the worker
    return 0


if __name__ == "__main__":
    sys.exit(main())
