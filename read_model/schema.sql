-- Read models, built by projections from the log and read by query_api and replay.
-- Created idempotently at start-up; every table can be dropped and rebuilt from the log.

CREATE TABLE IF NOT EXISTS projection_offsets (
    projection   text    NOT NULL,
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,           -- the next offset to consume
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- A workflow is the tenant's: its id is derived from (tenant, name), but ids are derivable by
-- anyone, so every key and every read includes the tenant (a publication of one tenant
-- never lands on another's row, whatever id it carries).
CREATE TABLE IF NOT EXISTS workflows (
    workflow_id     text NOT NULL,
    tenant          text NOT NULL,
    name            text NOT NULL,
    latest_version  text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, workflow_id)
);
CREATE INDEX IF NOT EXISTS workflows_tenant_name ON workflows (tenant, name);
-- Tables made before workflows were keyed by tenant have the key (workflow_id): moved to
-- the tenant's key in place, once (a key that includes tenant is left alone).
DO $$
DECLARE
    old_key text;
BEGIN
    SELECT c.conname INTO old_key FROM pg_constraint c
     WHERE c.conrelid = 'workflows'::regclass AND c.contype = 'p'
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                          AND a.attname = 'tenant');
    IF old_key IS NOT NULL THEN
        EXECUTE format('ALTER TABLE workflows DROP CONSTRAINT %I', old_key);
        ALTER TABLE workflows ADD PRIMARY KEY (tenant, workflow_id);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS workflow_versions (
    tenant          text NOT NULL,
    workflow_id     text NOT NULL,
    version         text NOT NULL,
    definition      jsonb NOT NULL,
    definition_ref  text NOT NULL,
    ir_ref          text NOT NULL,
    published_at    timestamptz NOT NULL,
    event_id        text NOT NULL,
    PRIMARY KEY (tenant, workflow_id, version)
);
-- Tables made before workflows were keyed by tenant have no tenant column and the key
-- (workflow_id, version). Once: the column is added and filled from the workflow's row
-- (then one row per id, so one tenant each); a version without a workflow row cannot be
-- read by anyone and is dropped (a rebuild from the log makes it again, with its tenant);
-- then the key moves to the tenant's.
DO $$
DECLARE
    old_key text;
BEGIN
    SELECT c.conname INTO old_key FROM pg_constraint c
     WHERE c.conrelid = 'workflow_versions'::regclass AND c.contype = 'p'
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
                          AND a.attname = 'tenant');
    IF old_key IS NOT NULL THEN
        ALTER TABLE workflow_versions ADD COLUMN IF NOT EXISTS tenant text;
        UPDATE workflow_versions v SET tenant = w.tenant FROM workflows w
         WHERE v.tenant IS NULL AND w.workflow_id = v.workflow_id;
        DELETE FROM workflow_versions WHERE tenant IS NULL;
        ALTER TABLE workflow_versions ALTER COLUMN tenant SET NOT NULL;
        EXECUTE format('ALTER TABLE workflow_versions DROP CONSTRAINT %I', old_key);
        ALTER TABLE workflow_versions ADD PRIMARY KEY (tenant, workflow_id, version);
    END IF;
END
$$;

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
-- Why a SCHEDULED node has not started: the reason of its latest run.node_queued (a worker
-- holds it back for a limit); cleared when the node moves on.
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS waiting_reason text;
-- What the node's model calls cost in US dollars, as each run.model_called priced it.
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS cost_usd double precision NOT NULL DEFAULT 0;
-- An agent node's tool calls (run.tool_called): how many distinct ones, and each one's
-- summary in log order (the result stays in the event, or the CAS).
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS tool_call_count bigint NOT NULL DEFAULT 0;
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS tool_calls jsonb;
-- A map node's items: {"<index>": {status, attempts, output, output_ref, error, started_at,
-- finished_at}} for every item scheduled so far (NULL for other nodes).
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS items jsonb;

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
-- DECISION: a hitl node's. BUDGET: an agent node's whose next model call would pass the run's
-- budget (run.budget_exceeded); approving it with a higher budget lets the node go on.
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'DECISION';
ALTER TABLE approvals ADD COLUMN IF NOT EXISTS reason text;

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
-- The read model's own history of the run: its status after each event, and the status of
-- the node the event is about. `aob runs show --at` folds the log through the coordinator's
-- evolve and must agree with these rows at every position (null on rows projected before).
ALTER TABLE run_events ADD COLUMN IF NOT EXISTS run_status text;
ALTER TABLE run_events ADD COLUMN IF NOT EXISTS node_id text;
ALTER TABLE run_events ADD COLUMN IF NOT EXISTS node_status text;

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
-- A decodable event PostgreSQL refused (projections.parking): which event, of what.
ALTER TABLE projection_poison ADD COLUMN IF NOT EXISTS event_id text;
ALTER TABLE projection_poison ADD COLUMN IF NOT EXISTS event_type text;
ALTER TABLE projection_poison ADD COLUMN IF NOT EXISTS aggregate_id text;
-- Why an event of the run is missing from the read model (parked in projection_poison).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS projection_error text;
-- The run's budget as it stands ({tokens, usd, on_exceed}: run.submitted, run.budget_raised).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS budget jsonb;

-- Patches proposed to a run (run.patch_submitted) and the coordinator's verdict on each
-- (run.patch_applied / run.patch_rejected). A verdict seen before its submission (that
-- record was poison, say) still makes the row; the submission fills it in later.
CREATE TABLE IF NOT EXISTS run_patches (
    run_id           text NOT NULL,
    patch_id         text NOT NULL,           -- the PatchSubmitted event's id
    seq              integer NOT NULL,        -- run_events seq of the submission (else of the verdict): log order
    status           text NOT NULL,           -- SUBMITTED APPLIED REJECTED
    reason           text,
    ops              jsonb,                   -- the RFC 6902 operations, as submitted
    base_version     text,
    submitted_by     text,                    -- the actor's id: an API key id, or run/node of an agent
    actor_kind       text,                    -- user | agent
    node_id          text,                    -- the agent node that proposed it, if any
    attempt          integer,
    submitted_at     timestamptz,
    decided_at       timestamptz,
    from_version     text,
    to_version       text,
    current_version  text,                    -- the version a rejected patch was judged against
    rejected_reasons jsonb NOT NULL DEFAULT '[]',
    added_nodes      jsonb NOT NULL DEFAULT '[]',
    removed_nodes    jsonb NOT NULL DEFAULT '[]',
    changed_nodes    jsonb NOT NULL DEFAULT '[]',
    agent_spawns     jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, patch_id)
);
CREATE INDEX IF NOT EXISTS run_patches_order ON run_patches (run_id, seq);

-- The chain of versions a run went through: seq 0 is the version it was submitted with
-- (from run.submitted), then one row per applied patch. Definitions are inline, so every
-- version of every run stays readable and diffable without the CAS.
CREATE TABLE IF NOT EXISTS run_versions (
    run_id          text NOT NULL,
    seq             integer NOT NULL,
    version         text NOT NULL,
    definition      jsonb NOT NULL,
    definition_ref  text NOT NULL,
    ir_ref          text NOT NULL,
    patch_id        text,                     -- null for seq 0
    from_version    text,                     -- null for seq 0
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Forks (run.forked): the run a fork was made from, and the point of its history where.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS forked_from text;      -- the source run's id
ALTER TABLE runs ADD COLUMN IF NOT EXISTS forked_at text;        -- position token of the source's last event included
ALTER TABLE runs ADD COLUMN IF NOT EXISTS forked_at_seq integer; -- how many of the source's events
CREATE INDEX IF NOT EXISTS runs_forked_from ON runs (forked_from, created_at, run_id)
    WHERE forked_from IS NOT NULL;

-- Subworkflows (run.submitted of a child run, run.subworkflow_started): a child run's parent
-- run and node and its depth, and the child run a subworkflow node started.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_run_id text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_node_id text;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS depth integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id, created_at, run_id)
    WHERE parent_run_id IS NOT NULL;
ALTER TABLE node_executions ADD COLUMN IF NOT EXISTS child_run_id text;
