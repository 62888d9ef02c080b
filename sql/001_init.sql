-- The instance table (one row per saga instance) and the runner table (one row per
-- live worker process). {schema} is filled in by saga.migrate.

CREATE TABLE {schema}.instance (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL,               -- the saga's name
    instance_id text        NOT NULL,               -- the caller's id, unique per saga name
    step        text        NOT NULL,               -- the step to run next (or the last one run)
    input       jsonb,                              -- that step's input
    state       jsonb,                              -- the instance's state
    status      smallint    NOT NULL DEFAULT 0      -- 0 PENDING, 1 RUNNING, 2 COMPLETE, 3 ERROR
                CHECK (status BETWEEN 0 AND 3),
    run_after   timestamptz NOT NULL DEFAULT now(), -- PENDING rows are due once run_after <= now()
    runner_id   text,                               -- the runner holding a RUNNING row
    attempts    integer     NOT NULL DEFAULT 0,     -- claims of the current step
    error       text,                               -- the last failure, kept on ERROR
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT instance_name_instance_id_key UNIQUE (name, instance_id)
) WITH (fillfactor = 80);  -- room on each page for HOT updates (set_state checkpoints)

-- Serves the claim query and the next-due look-up: only PENDING rows are indexed.
CREATE INDEX instance_due_idx ON {schema}.instance (name, run_after) WHERE status = 0;

-- Serves the reaper: RUNNING rows by the runner that holds them.
CREATE INDEX instance_running_idx ON {schema}.instance (runner_id) WHERE status = 1;

CREATE TABLE {schema}.runner (
    id           text        PRIMARY KEY,           -- host:pid:random, unique per process start
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    serves       jsonb       NOT NULL,              -- the steps it runs, by saga name
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL             -- heartbeat_at + its own heartbeat timeout
);
