-- Read models, built by projections from the log and read by query_api.
-- Created idempotently at start-up; every table can be dropped and rebuilt from the log.

CREATE TABLE IF NOT EXISTS projection_offsets (
    projection   text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,           -- the next offset to consume
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

CREATE TABLE IF NOT EXISTS workflows (
    workflow_id     text PRIMARY KEY,
    tenant          text NOT NULL,
    name            text NOT NULL,
    latest_version  text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_tenant_name ON workflows (tenant, name);

CREATE TABLE IF NOT EXISTS workflow_versions (
    workflow_id     text NOT NULL,
    version         text NOT NULL,
    definition      jsonb NOT NULL,
    definition_ref  text NOT NULL,
    ir_ref          text NOT NULL,
    published_at    timestamptz NOT NULL,
    event_id        text NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE IF NOT EXISTS runs (
    run_id         text PRIMARY KEY,
    tenant         text NOT NULL,
    workflow_id    text NOT NULL,
    workflow_name  text NOT NULL,
    version        text NOT NULL,
    status         text NOT NULL,            -- PENDING RUNNING WAITING COMPLETED FAILED CANCELLED
    input          jsonb,
    output         jsonb,
    error          text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    started_at     timestamptz,
    finished_at    timestamptz,
    event_count    integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_tenant_created ON runs (tenant, created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_tenant_status ON runs (tenant, status);
CREATE INDEX IF NOT EXISTS runs_tenant_workflow ON runs (tenant, workflow_id);

CREATE TABLE IF NOT EXISTS node_executions (
    run_id        text NOT NULL,
    node_id       text NOT NULL,
    node_type     text NOT NULL,
    status        text NOT NULL,             -- PENDING SCHEDULED RUNNING WAITING SUCCEEDED FAILED SKIPPED
    attempts      integer NOT NULL DEFAULT 0,
    successes     integer NOT NULL DEFAULT 0, -- must never exceed 1: a check on exactly-once effects
    scheduled_at  timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    output        jsonb,                     -- inline output when small
    output_ref    text,
    error         text,
    PRIMARY KEY (run_id, node_id)
);

-- Token usage of agent nodes: the sum of the node's run.model_called events (all attempts).
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS prompt_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS completion_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS total_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS cached_tokens bigint NOT NULL DEFAULT 0;

-- A hitl node's request for a decision, and what became of it.
CREATE TABLE IF NOT EXISTS approvals (
    run_id          text NOT NULL,
    node_id         text NOT NULL,
    tenant          text NOT NULL,
    attempt         integer NOT NULL,
    status          text NOT NULL,           -- WAITING APPROVED REJECTED CANCELLED
    prompt          text NOT NULL,
    requested_at    timestamptz NOT NULL,
    due_at          timestamptz,             -- when the default outcome applies, if limited
    default_outcome text,
    decision        text,                    -- approved | rejected
    comment         text,
    decided_by      text,                    -- the approver's key id, or 'timeout'
    decided_at      timestamptz,
    timed_out       boolean NOT NULL DEFAULT false,
    refusals        jsonb NOT NULL DEFAULT '[]', -- decisions refused: [{decision, reason, at, submission_id}]
    PRIMARY KEY (run_id, node_id)
);
CREATE INDEX IF NOT EXISTS approvals_pending ON approvals (tenant, requested_at, run_id, node_id)
    WHERE status = 'WAITING';

CREATE TABLE IF NOT EXISTS run_events (
    run_id        text NOT NULL,
    seq           integer NOT NULL,          -- 1, 2, … in log order within the run
    event_id      text NOT NULL UNIQUE,      -- duplicates from at-least-once delivery stop here
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset  bigint NOT NULL,
    causation_id  text,
    actor         jsonb NOT NULL,
    payload       jsonb NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS run_events_position ON run_events (kafka_partition, kafka_offset);

-- Workflow events seen, by id: a redelivered WorkflowPublished changes nothing.
CREATE TABLE IF NOT EXISTS workflow_events (
    event_id        text PRIMARY KEY,
    workflow_id     text NOT NULL,
    type            text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL
);

-- Records a projection could not decode; the coordinator dead-letters them, the read side
-- only notes where they were and goes on.
CREATE TABLE IF NOT EXISTS projection_poison (
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint  NOT NULL,
    reason       text    NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
