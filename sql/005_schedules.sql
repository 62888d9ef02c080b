-- Schedules: one row per (saga, schedule) that some deployment declared. The row is the
-- schedule's whole state: the ticker claims it FOR UPDATE SKIP LOCKED, creates the
-- tick's instance and advances next_tick in one transaction, so ticks survive restarts
-- and no process leads.
CREATE TABLE {schema}.schedule (
    saga          text        NOT NULL,            -- the saga's name
    name          text        NOT NULL,            -- the schedule's name, unique per saga
    step          text        NOT NULL,            -- the step each tick's instance starts at
    expression    text        NOT NULL,            -- 'every 300s', or the cron expression
    tz            text        NOT NULL,            -- the IANA zone the ticks are computed in
    definition    text        NOT NULL,            -- all of the above and the policies, as
                                                   -- declared: only a ticker that declares
                                                   -- the same ticks the row
    max_lateness  float8      NOT NULL,            -- seconds; `stats` reports later rows
    next_tick     timestamptz,                     -- NULL: new, changed or resumed, to be
                                                   -- computed from now
    last_tick     timestamptz,                     -- the latest tick made
    last_instance text,                            -- its instance id (saga = this saga)
    paused        boolean     NOT NULL DEFAULT false,
    retired_at    timestamptz,                     -- when a deployment declared the saga's
                                                   -- schedules without this one
    ticks         bigint      NOT NULL DEFAULT 0,  -- instances created
    skipped       bigint      NOT NULL DEFAULT 0,  -- due ticks passed over (policy, overlap)
    last_error    text,                            -- the last tick whose input failed
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga, name)
);

-- Serves the ticker's look for due rows, and its wait for the next one.
CREATE INDEX schedule_due_idx ON {schema}.schedule (saga, coalesce(next_tick, '-infinity'))
    WHERE NOT paused AND retired_at IS NULL;
