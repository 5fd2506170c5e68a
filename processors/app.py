"""The faust application of the coordinator: its settings and its one table.

- ``store="memory://"`` with the changelog-backed table: the state of a run lives in memory
  and is rebuilt from the compacted changelog at start-up or after a rebalance.
- ``processing_guarantee="at_least_once"``: correctness rests on deterministic decision ids
  and idempotent consumers, not on Kafka transactions (DESIGN.md, Events).
- ``topic_allow_declare=False``: faust creates no topic; ``processors.topics`` does.
- ``web_enabled=False``: no HTTP port; liveness is the heartbeat file.
- its consumer and producer move records without faust's waits (``processors.faust_app``):
  a record handed to the agent without a task, no dead second after a full stream buffer,
  fetches that wait at most ``fetch_max_wait_ms``, the producer handed over at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from infra.instances import instance_name
from infra.settings import Settings
from processors.config import TABLE_NAME, CoordinatorConfig
from processors.faust_app import CoordinatorFaustApp
from schemas.events import MAX_RECORD_BYTES


@dataclass
class CoordinatorApp:
    app: faust.App
    table: faust.types.TableT[bytes, bytes]  # run id (bytes) -> stored state (processors.stored)
    runs_topic: faust.TopicT


def broker_url(bootstrap: str) -> str:
    """faust's spelling of a bootstrap list: ``kafka://h1:p1;h2:p2``."""
    return "kafka://" + ";".join(part.strip() for part in bootstrap.split(",") if part.strip())


def create_app(settings: Settings, config: CoordinatorConfig) -> CoordinatorApp:
    app = CoordinatorFaustApp(
        config.app_id,
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        broker=broker_url(settings.kafka_bootstrap),
        store="memory://",
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,  # no on_leader timers, so no leader topic
        topic_partitions=settings.topic_partitions,
        # A coordinator restarted after a crash waits for its dead predecessor's session to
        # expire before it gets the partitions back: 60 s by default, 10 s here.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        datadir=str(settings.home / "faust" / instance_name(config.app_id, settings.instance)),
        # faust's default (1,000,000) is less than an event of MAX_EVENT_BYTES with its key
        # and headers; the coordinator checks every record against this before sending it.
        producer_max_request_size=MAX_RECORD_BYTES,
        # No linger (faust's default, 0): a batch's records go to the broker at once, the
        # events with the tasks they schedule. A linger of 2 ms saved the coordinator a
        # twentieth of its CPU, but let a task's batch go ahead of its run.node_scheduled: a
        # worker's outcome then reached the run topic before the schedule it answers (a map
        # node's items showed 35 in flight in the log where 20 may run).
        producer_linger=0.0,
        # A batch's records for one partition go in one record batch (faust's default, 16
        # KB, is about 50 decisions): past it, the next send waits for the batch ahead to be
        # acknowledged. The broker takes up to a MiB a batch (MAX_RECORD_BYTES).
        producer_max_batch_size=256 * 1024,
    )
    # Raw bytes in and out: decoding is ours (schemas.codec), so a poison record reaches the
    # agent and is dead-lettered, instead of crashing faust's own deserialiser.
    # Serializers named on the topic itself: faust's conductor ignores a `schema=` here.
    runs_topic = app.topic(
        config.runs_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    table = app.Table(
        TABLE_NAME,
        default=None,
        partitions=settings.topic_partitions,
        # bytes types make faust pick the raw codec for the changelog too (a `schema=`
        # would not reach the changelog's recovery, which then decodes as JSON).
        key_type=bytes,
        value_type=bytes,
        help="The coordinator's state of each run, a fold of the run's events.",
    )
    return CoordinatorApp(app=app, table=table, runs_topic=runs_topic)
