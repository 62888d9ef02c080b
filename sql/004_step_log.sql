-- The opt-in step log: one row per step run (which step, attempt, runner, when it was
-- claimed or begun, when it ended and what the instance became), written by a trigger on
-- instance in the transaction that writes the row change, so the log is never out of step
-- with the table, whichever statement the worker uses. Created DISABLED: turn it on per
-- schema with `python -m saga steplog on` (saga.steplog.enable).
--
-- Also the indexes and statistics the dashboard (saga.web) reads with:
--   instance_updated_idx  the instance list, newest change first, keyset-paginated;
--   instance_failed_idx   the same for ERROR/CANCELLED rows, rare among millions;
--   instance_name_status  planner statistics on (name, status), so that EXPLAIN's
--                         estimate of one saga's count in one status is close.
-- updated_at in an index means a set_state checkpoint is no longer a HOT update.

CREATE TABLE {schema}.step_log (
    id          bigserial   PRIMARY KEY,
    instance    bigint      NOT NULL,           -- instance.id (see step_log_forget below)
    step        text        NOT NULL,           -- the step that ran
    attempt     integer     NOT NULL,           -- the instance's attempts at the claim
    runner_id   text,                           -- who ran it
    started_at  timestamptz,                    -- claim or run-on time; NULL: log turned on mid-step
    ended_at    timestamptz,                    -- NULL while it runs
    status      smallint,                       -- what the instance became (0..4)
    next_step   text,                           -- the instance's step after it
    error       text                            -- the failure it ended in, if any
) WITH (fillfactor = 80);  -- the end of a step updates its row in place (HOT)

CREATE INDEX step_log_instance_idx ON {schema}.step_log (instance, id);
-- Summarizing (BRIN) indexes do not stop HOT updates (PostgreSQL 16 and later).
CREATE INDEX step_log_ended_idx ON {schema}.step_log USING brin (ended_at);

-- Row transitions, from queries.sql (and any statement that makes the same changes):
--   PENDING -> RUNNING                    a claim: a step begins (open a log row)
--   RUNNING -> RUNNING, same step/input   set_state or a cancel request: nothing ends
--   RUNNING -> RUNNING, other step/input/attempts   an undelayed continuation: close, open
--   RUNNING -> PENDING, attempts - 1      release of a claim never started: drop the row
--   RUNNING -> PENDING/COMPLETE/ERROR/CANCELLED     the step ended: close the row
-- SECURITY DEFINER: the workers' role needs no grant on step_log; search_path is fixed.
CREATE FUNCTION {schema}.record_step() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF OLD.status = 1 THEN
        IF NEW.status = 0 AND NEW.attempts = OLD.attempts - 1 AND NEW.step = OLD.step THEN
            DELETE FROM {schema}.step_log WHERE instance = OLD.id AND ended_at IS NULL;
            RETURN NULL;
        END IF;
        UPDATE {schema}.step_log
           SET ended_at = NEW.updated_at, status = NEW.status, next_step = NEW.step,
               error = NEW.error  -- the outcomes that go on or complete clear it
         WHERE instance = OLD.id AND ended_at IS NULL;
        IF NOT FOUND THEN  -- begun before the log was on
            INSERT INTO {schema}.step_log (instance, step, attempt, runner_id, ended_at,
                                           status, next_step, error)
            VALUES (OLD.id, OLD.step, OLD.attempts, OLD.runner_id, NEW.updated_at,
                    NEW.status, NEW.step, NEW.error);
        END IF;
    END IF;
    IF NEW.status = 1 THEN  -- claimed, or run on to the next step
        INSERT INTO {schema}.step_log (instance, step, attempt, runner_id, started_at)
        VALUES (NEW.id, NEW.step, NEW.attempts, NEW.runner_id, NEW.updated_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER step_log AFTER UPDATE ON {schema}.instance
    FOR EACH ROW
    WHEN ((OLD.status = 0 AND NEW.status = 1)
          OR (OLD.status = 1 AND (NEW.status <> 1 OR NEW.step <> OLD.step
                                  OR NEW.attempts <> OLD.attempts
                                  OR NEW.input IS DISTINCT FROM OLD.input
                                  OR NEW.called <> OLD.called)))
    EXECUTE FUNCTION {schema}.record_step();
ALTER TABLE {schema}.instance DISABLE TRIGGER step_log;

-- A foreign key would cost every step a lookup and forbid `TRUNCATE instance` alone:
-- instead, a statement's deleted instances (a purge batch) take their log rows with
-- them, and a TRUNCATE of instance empties the log. These stay on with the log off.
CREATE FUNCTION {schema}.forget_steps() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE {schema}.step_log;
    ELSE
        DELETE FROM {schema}.step_log WHERE instance IN (SELECT id FROM gone);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER step_log_forget AFTER DELETE ON {schema}.instance
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION {schema}.forget_steps();
CREATE TRIGGER step_log_truncate AFTER TRUNCATE ON {schema}.instance
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.forget_steps();

CREATE INDEX instance_updated_idx ON {schema}.instance (updated_at, id);
CREATE INDEX instance_failed_idx ON {schema}.instance (updated_at, id) WHERE status >= 3;
CREATE STATISTICS {schema}.instance_name_status (mcv) ON name, status FROM {schema}.instance;
