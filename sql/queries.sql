-- The queries of saga.store, one per "-- name:" block. {schema} is the saga's schema;
-- parameters are %(name)s placeholders. A "lease" is the guard
--   id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
-- that makes a write by a runner that lost the row (reaped, re-claimed) change nothing.
-- Times are statement_timestamp() rather than now(), which is when the transaction began:
-- in a caller's long transaction, or a `conn` step's, that can be long ago.

-- name: insert_instance
-- Create a PENDING instance and wake the workers on commit; no row if it exists already
-- (ON CONFLICT rather than a unique violation, which would abort a caller's transaction).
WITH created AS (
    INSERT INTO {schema}.instance (name, instance_id, step, input, state, run_after,
                                   created_at, updated_at)
    VALUES (%(name)s, %(instance)s, %(step)s, %(input)s::jsonb, %(state)s::jsonb,
            statement_timestamp() + make_interval(secs => %(delay)s),
            statement_timestamp(), statement_timestamp())
    ON CONFLICT (name, instance_id) DO NOTHING
    RETURNING id)
SELECT id, pg_notify(%(channel)s, %(name)s) FROM created;

-- name: call_instance
-- Replace the next step and input of a PENDING instance and wake the workers on commit.
WITH called AS (
    UPDATE {schema}.instance
       SET step = %(step)s, input = %(input)s::jsonb, attempts = 0, error = NULL,
           run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
     WHERE name = %(name)s AND instance_id = %(instance)s AND status = 0
    RETURNING id)
SELECT id, pg_notify(%(channel)s, %(name)s) FROM called;

-- name: instance_status
SELECT status FROM {schema}.instance WHERE name = %(name)s AND instance_id = %(instance)s;

-- name: get_instance
SELECT id, name, instance_id, step, status, input::text, state::text, attempts, error,
       run_after, runner_id, created_at, updated_at
  FROM {schema}.instance
 WHERE name = %(name)s AND instance_id = %(instance)s;

-- name: claim_due
-- Lock up to `limit` due instances of known steps and mark them RUNNING under this runner.
-- SKIP LOCKED lets concurrent claimers pass each other instead of queueing.
-- updated_at is the moment of the claim, after any lock wait (release_stale compares it).
UPDATE {schema}.instance
   SET status = 1, runner_id = %(runner_id)s, attempts = attempts + 1,
       updated_at = clock_timestamp()
 WHERE id IN (SELECT id FROM {schema}.instance
               WHERE status = 0 AND name = %(name)s AND step = ANY(%(steps)s)
                 AND run_after <= coalesce(%(now)s::timestamptz, statement_timestamp())
               ORDER BY run_after
               LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
RETURNING id, instance_id, step, input::text, state::text, attempts;

-- name: next_due
-- Seconds until the earliest PENDING instance of these steps is due (NULL if none).
SELECT extract(epoch FROM min(run_after) - statement_timestamp())::float8
  FROM {schema}.instance
 WHERE status = 0 AND name = %(name)s AND step = ANY(%(steps)s);

-- name: set_state
UPDATE {schema}.instance SET state = %(state)s::jsonb, updated_at = statement_timestamp()
 WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s;

-- name: run_on
-- An undelayed continuation on the same runner: the row stays RUNNING, the new step's
-- first attempt is this one.
UPDATE {schema}.instance
   SET step = %(step)s, input = %(input)s::jsonb, state = coalesce(%(state)s::jsonb, state),
       attempts = 1, error = NULL, run_after = statement_timestamp(), updated_at = statement_timestamp()
 WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s;

-- name: schedule
-- A continuation that waits (or that a stopping runner hands on): back to PENDING.
WITH scheduled AS (
    UPDATE {schema}.instance
       SET step = %(step)s, input = %(input)s::jsonb, state = coalesce(%(state)s::jsonb, state),
           status = 0, runner_id = NULL, attempts = 0, error = NULL,
           run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
    RETURNING name)
SELECT pg_notify(%(channel)s, name) FROM scheduled;

-- name: complete
UPDATE {schema}.instance
   SET status = 2, state = coalesce(%(state)s::jsonb, state), runner_id = NULL, error = NULL,
       updated_at = statement_timestamp()
 WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s;

-- name: fail
-- A failed attempt: back to PENDING after a backoff (status 0), or ERROR for good (status 3).
UPDATE {schema}.instance
   SET status = %(status)s, error = %(error)s, runner_id = NULL,
       run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
 WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s;

-- name: release
-- Hand back claimed rows whose step never started: the claim did not count.
WITH released AS (
    UPDATE {schema}.instance
       SET status = 0, runner_id = NULL, attempts = attempts - 1, updated_at = statement_timestamp()
     WHERE id = ANY(%(ids)s) AND runner_id = %(runner_id)s AND status = 1
    RETURNING name)
SELECT pg_notify(%(channel)s, name) FROM (SELECT DISTINCT name FROM released) AS names;

-- name: register_runner
-- Again after being reaped, or from a second pool onto the same schema: merge what it serves.
INSERT INTO {schema}.runner (id, hostname, pid, serves, started_at, heartbeat_at, expires_at)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(serves)s::jsonb,
        statement_timestamp(), statement_timestamp(),
        statement_timestamp() + make_interval(secs => %(timeout)s))
ON CONFLICT (id) DO UPDATE
   SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at,
       serves = runner.serves || excluded.serves;

-- name: heartbeat
-- Each runner says how long its silence may last: reapers judge it by its own timeout.
UPDATE {schema}.runner
   SET heartbeat_at = statement_timestamp(),
       expires_at = statement_timestamp() + make_interval(secs => %(timeout)s)
 WHERE id = %(id)s;

-- name: delete_runner
DELETE FROM {schema}.runner WHERE id = %(id)s;

-- name: reap_runners
-- Forget runners silent for longer than their timeout (and `margin` seconds more).
DELETE FROM {schema}.runner
 WHERE expires_at < statement_timestamp() - make_interval(secs => %(margin)s)
RETURNING id;

-- name: recover_orphans
-- RUNNING rows whose runner row is gone (reaped, or deleted by a stop that left a step
-- running) go back to PENDING, and the workers wake.
-- SKIP LOCKED: two reapers never wait on (or deadlock over) the same rows.
WITH orphan AS (
    SELECT i.id FROM {schema}.instance AS i
     WHERE i.status = 1
       AND NOT EXISTS (SELECT 1 FROM {schema}.runner AS r WHERE r.id = i.runner_id)
       FOR UPDATE SKIP LOCKED),
recovered AS (
    UPDATE {schema}.instance AS i
       SET status = 0, runner_id = NULL, run_after = statement_timestamp(), updated_at = statement_timestamp(),
           error = 'runner ' || coalesce(i.runner_id, '?') || ' stopped during step ' || i.step
      FROM orphan WHERE i.id = orphan.id
    RETURNING i.name)
SELECT name, count(*), pg_notify(%(channel)s, name) FROM recovered GROUP BY name;

-- name: release_stale
-- This runner's own RUNNING rows that none of its threads works on any more (an outcome
-- that could not be written, say during a database outage) go back to PENDING.
WITH stale AS (
    UPDATE {schema}.instance
       SET status = 0, runner_id = NULL, run_after = statement_timestamp(), updated_at = statement_timestamp()
     WHERE status = 1 AND runner_id = %(runner_id)s AND NOT (id = ANY(%(in_flight)s))
       AND updated_at < statement_timestamp() - make_interval(secs => %(age)s)
    RETURNING name)
SELECT name, count(*), pg_notify(%(channel)s, name) FROM stale GROUP BY name;
