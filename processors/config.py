"""The coordinator's own settings (``AOB_COORDINATOR_*``), on top of the shared Settings.

The defaults are the deployment's names. They can be overridden so that a second, isolated
coordinator can share one Kafka cluster (the connected tests do this with fresh names: their
runs, tasks and consumer group then never meet the running system's).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from run_model.patching import (
    DEFAULT_AGENT_SPAWN_LIMIT,
    DEFAULT_MAX_OPS,
    DEFAULT_MAX_PATCHES,
    PatchLimits,
)
from schemas.topics import DLQ, RUN_EVENTS, TASK_TOPIC_PREFIX
from schemas.workflow import MAX_NODES

DEFAULT_APP_ID = "aob-coordinator"
TABLE_NAME = "run_state"


class CoordinatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AOB_COORDINATOR_", extra="ignore")

    app_id: str = DEFAULT_APP_ID
    runs_topic: str = RUN_EVENTS
    task_topic_prefix: str = TASK_TOPIC_PREFIX
    dlq_topic: str = DLQ
    # A batch: at most this many records; closed once batch_gap_turns turns of the event
    # loop brought no new record, or once it has been gathered for batch_longest_s
    # (processors.batching). Under a steady load records keep coming, so batches close on
    # batch_longest_s, and a step waits up to that long: at 50 ms, paced at half the burst
    # rate, the coordinator's step p99 was 57 ms (fanout10) and 51 ms (chain3); at 20 ms,
    # 47 and 41, with bursts as fast (a backlog fills a batch within a few turns).
    batch_max: int = Field(500, ge=1)
    batch_gap_turns: int = Field(10, ge=1)
    batch_longest_s: float = Field(0.02, gt=0)
    # How long a fetch may wait at the broker for data (processors.faust_app says why
    # a long one stalls a burst); faust's own is 1,500 ms.
    fetch_max_wait_ms: int = Field(20, ge=1, le=1500)
    # Decoded states kept in memory, the most recently used: a run's next event then costs
    # no decoding. The table holds every live state (compressed, about 1 KB for a small
    # run); a decoded one takes about 40 KB (a fanout10 run: its workflow is shared with the
    # other runs of its version, its nodes' states are its own), so the cache is bounded, or
    # a backlog of thousands of live runs would hold them all decoded. A fanout10 state
    # decoded again costs about 60 µs, and about 7 µs to free when it leaves. Kept for a
    # burst of a thousand live runs: with 2,000 kept against 300, the coordinator's CPU per
    # fanout10 burst fell by about a twentieth (4.3 s against 4.6, three bursts each).
    state_cache: int = Field(1000, ge=0)
    # Once the loop has been idle this long after work, the memory it freed is given back
    # to the system (infra.memory_release); 0: never.
    release_memory_after_s: float = Field(2.0, ge=0)
    # Log throughput and latency every this many seconds (0: never).
    stats_interval_s: float = 30.0
    # How often the timer looks for due retries and deadlines: the lateness of a timer.
    timer_interval_s: float = 0.25
    # Added to an attempt's time limit before the coordinator gives up on it, so that the
    # worker's own timeout, which says more, is normally the one reported.
    timeout_grace_s: float = 5.0
    # A timer fired but not yet acted on (a backlog) is fired again after this long; the
    # copies share one event id, so consumers see one.
    timer_refire_s: float = 15.0
    # How often the schedule clock looks for schedules due (processors.schedule_clock): the
    # lateness of a firing.
    schedule_interval_s: float = Field(0.25, gt=0)
    # After downtime, how many of a schedule's missed moments are fired (the latest ones);
    # the others are recorded as missed (schedule.skipped).
    schedule_catch_up: int = Field(1, ge=1)
    # Bounds on patches of live runs (run_model.patching). A change applies to
    # patches judged after it; verdicts already in the log stand.
    max_patch_ops: int = Field(DEFAULT_MAX_OPS, ge=1)
    max_nodes_per_run: int = Field(MAX_NODES, ge=1, le=MAX_NODES)
    max_patches_per_run: int = Field(DEFAULT_MAX_PATCHES, ge=1)
    agent_spawn_limit: int = Field(DEFAULT_AGENT_SPAWN_LIMIT, ge=0)

    @property
    def patch_limits(self) -> PatchLimits:
        return PatchLimits(
            max_ops=self.max_patch_ops,
            max_nodes=self.max_nodes_per_run,
            agent_spawn_limit=self.agent_spawn_limit,
            max_patches=self.max_patches_per_run,
        )

    @property
    def changelog_topics(self) -> list[str]:
        """The names faust gives the tables' changelog topics."""
        return [f"{self.app_id}-{TABLE_NAME}-changelog"]

    @property
    def heartbeat_name(self) -> str:
        """``coordinator`` for the deployment's coordinator, which ``aob status`` watches."""
        return "coordinator" if self.app_id == DEFAULT_APP_ID else self.app_id

    def task_topic(self, node_type: str) -> str:
        return f"{self.task_topic_prefix}{node_type}"
