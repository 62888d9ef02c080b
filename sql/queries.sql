-- The queries of saga.store, one per "-- name:" block. {schema} is the saga's schema;
-- parameters are %(name)s placeholders. A "lease" is the guard
--   id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
-- that makes a write by a runner that lost the row (reaped, re-claimed) change nothing.
-- Times are statement_timestamp() rather than now(), which is when the transaction began:
-- in a caller's long transaction, or a `conn` step's, that can be long ago.
-- Two NOTIFY channels: %(channel)s (payload: the saga name) wakes the workers when
-- something becomes due (from the API only while some runner is idle: see
-- 006_runner_idle.sql and set_runner_idle); %(done_channel)s (payload: the row id) wakes `wait()` when an
-- instance finishes. A cancel asked of a RUNNING row (cancel_requested) turns any
-- transition back to PENDING, or on to the next step, into CANCELLED (4).

-- name: insert_instance
-- Create a PENDING instance and wake the workers on commit if one is idle; no row if it
-- exists already (ON CONFLICT rather than a unique violation, which would abort a
-- caller's transaction).
WITH created AS (
    INSERT INTO {schema}.instance (name, instance_id, step, input, state, run_after,
                                   created_at, updated_at, trace_parent, key)  -- trace: 007
    VALUES (%(name)s, %(instance)s, %(step)s, %(input)s::jsonb, %(state)s::jsonb,
            statement_timestamp() + make_interval(secs => %(delay)s),
            statement_timestamp(), statement_timestamp(), %(trace)s, %(key)s)
    ON CONFLICT (name, instance_id) DO NOTHING
    RETURNING id)
SELECT id, CASE WHEN EXISTS (SELECT FROM {schema}.runner WHERE idle)
                THEN pg_notify(%(channel)s, %(name)s) END
  FROM created;

-- name: call_instance
-- Replace the next step and input of a PENDING instance and wake an idle worker on commit;
-- unless an earlier call's step has not finished yet (`called`): that call must not be
-- lost, so this one is refused. The step's successful end clears `called`.
WITH called AS (
    UPDATE {schema}.instance
       SET step = %(step)s, input = %(input)s::jsonb, attempts = 0, error = NULL, called = true,
           trace_call = %(trace)s,  -- trace: 007
           run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
     WHERE name = %(name)s AND instance_id = %(instance)s AND status = 0 AND NOT called
    RETURNING id)
SELECT id, CASE WHEN EXISTS (SELECT FROM {schema}.runner WHERE idle)
                THEN pg_notify(%(channel)s, %(name)s) END
  FROM called;

-- name: instance_status
SELECT status, called FROM {schema}.instance
 WHERE name = %(name)s AND instance_id = %(instance)s;

-- name: insert_many
-- Create PENDING instances from parallel arrays in one statement, skipping those that
-- exist; return the ids created, and wake the workers once (if one is idle). `keys` is
-- NULL (no keys) or one concurrency key per instance.
WITH created AS (
    INSERT INTO {schema}.instance (name, instance_id, step, input, state, run_after,
                                   created_at, updated_at, trace_parent, key)  -- trace: 007
    SELECT %(name)s, item.instance_id, %(step)s, item.input, %(state)s::jsonb,
           statement_timestamp() + make_interval(secs => %(delay)s),
           statement_timestamp(), statement_timestamp(), %(trace)s, item.key
      FROM unnest(%(instances)s::text[], %(inputs)s::jsonb[],
                  coalesce(%(keys)s::text[], '{{}}')) AS item(instance_id, input, key)
    ON CONFLICT (name, instance_id) DO NOTHING
    RETURNING instance_id)
SELECT coalesce(array_agg(instance_id), '{{}}'),
       CASE WHEN count(*) > 0 AND EXISTS (SELECT FROM {schema}.runner WHERE idle)
            THEN pg_notify(%(channel)s, %(name)s) END
  FROM created;

-- name: get_instance
SELECT id, name, instance_id, step, status, input::text, state::text, attempts, error,
       run_after, runner_id, created_at, updated_at, cancel_requested, key
  FROM {schema}.instance
 WHERE name = %(name)s AND instance_id = %(instance)s;

-- name: instance_done
-- The status of an instance `wait()` waits for, and its row id (the payload to watch).
SELECT id, status FROM {schema}.instance WHERE name = %(name)s AND instance_id = %(instance)s;

-- name: cancel_instance
-- PENDING becomes CANCELLED at once; RUNNING is flagged for its runner. Return the status
-- the row had (no row: not found, or finished already).
WITH target AS (
    SELECT id, status FROM {schema}.instance
     WHERE name = %(name)s AND instance_id = %(instance)s AND status IN (0, 1)
       FOR UPDATE),
cancelled AS (
    UPDATE {schema}.instance AS i
       SET status = CASE WHEN target.status = 0 THEN 4 ELSE 1 END,
           cancel_requested = (target.status = 1),
           updated_at = statement_timestamp()
      FROM target WHERE i.id = target.id
    RETURNING i.id, target.status AS was)
SELECT was, CASE WHEN was = 0 THEN pg_notify(%(done_channel)s, id::text) END FROM cancelled;

-- name: retry_instance
-- Dead-letter replay: an ERROR instance goes back to PENDING at its step, attempts reset;
-- an idle worker is woken.
WITH retried AS (
    UPDATE {schema}.instance
       SET status = 0, attempts = 0, error = NULL, runner_id = NULL, cancel_requested = false,
           run_after = statement_timestamp(), updated_at = statement_timestamp()
     WHERE name = %(name)s AND instance_id = %(instance)s AND status = 3
    RETURNING id)
SELECT id, CASE WHEN EXISTS (SELECT FROM {schema}.runner WHERE idle)
                THEN pg_notify(%(channel)s, %(name)s) END
  FROM retried;

-- name: claim_due
-- Lock up to `limit` due instances of known steps and mark them RUNNING under this runner.
-- The due rows are looked up step by step (LATERAL, one range of instance_due_idx per
-- step), then the earliest are taken: rows of steps this runner does not serve are never
-- visited, however many there are. SKIP LOCKED lets concurrent claimers pass each other
-- instead of queueing; a row locked but not among the earliest is unlocked at commit.
-- updated_at is the moment of the claim, after any lock wait (release_stale compares it).
-- Store.fixed_query writes name, steps and limit in as constants (one text per saga and
-- limit), so that the server keeps a generic plan instead of planning every claim; with
-- the limit a constant, the planner knows how few rows the join brings and finds them
-- by primary key, even in a plan made while the table was empty (as long as the limit is
-- small: a plan for a batch made then may scan the table until the next ANALYZE).
-- `claims` and the last column are the trace context (007), for saga.telemetry.context:
-- '<start traceparent or -> <claims> [<call traceparent>]', NULL when nothing was traced;
-- the call's only while its step has not finished (`called`).
UPDATE {schema}.instance AS i
   SET status = 1, runner_id = %(runner_id)s, attempts = i.attempts + 1,
       claims = i.claims + 1,
       updated_at = clock_timestamp()
  FROM (SELECT due.id
          FROM unnest(%(steps)s::text[]) AS wanted(step)
         CROSS JOIN LATERAL (
               SELECT id, run_after FROM {schema}.instance
                WHERE status = 0 AND name = %(name)s AND step = wanted.step
                  AND run_after <= coalesce(%(now)s::timestamptz, statement_timestamp())
                ORDER BY run_after
                LIMIT %(limit)s
                  FOR UPDATE SKIP LOCKED) AS due
         ORDER BY due.run_after
         LIMIT %(limit)s) AS claimed
 WHERE i.id = claimed.id
RETURNING i.id, i.instance_id, i.step, i.input::text, i.state::text, i.attempts,
          CASE WHEN i.trace_parent IS NOT NULL OR (i.called AND i.trace_call IS NOT NULL)
               THEN concat_ws(' ', coalesce(i.trace_parent, '-'), i.claims,
                              CASE WHEN i.called THEN i.trace_call END) END;

-- name: claim_limited
-- The claim of a saga that declares limits (sql/008_limits.sql): rows as
-- (kind, id, instance_id, step, input, state, attempts, key, trace, due), see there.
SELECT * FROM {schema}.claim_limited(%(name)s, %(runner_id)s, %(steps)s::text[], %(limit)s,
                                     %(limits)s::jsonb, %(after)s);

-- name: limit_usage
-- Per limit of a saga: slots in use (RUNNING rows claimed under limits, of its steps;
-- for a rate, the starts in its current window) and due rows of its steps waiting.
SELECT l ->> 'id',
       CASE WHEN l ->> 'kind' = 'rate' THEN
            (SELECT count(*) FROM {schema}.limit_start AS s
              WHERE s.name = %(name)s AND s.lim = l ->> 'id'
                AND s.at > statement_timestamp() - make_interval(secs => (l ->> 'per')::float8))
       ELSE (SELECT count(*) FROM {schema}.instance AS i
              WHERE i.status = 1 AND i.limited AND i.name = %(name)s
                AND i.step IN (SELECT jsonb_array_elements_text(l -> 'steps'))) END,
       (SELECT count(*) FROM {schema}.instance AS i
         WHERE i.status = 0 AND i.name = %(name)s AND i.run_after <= statement_timestamp()
           AND i.step IN (SELECT jsonb_array_elements_text(l -> 'steps')))
  FROM jsonb_array_elements(%(limits)s::jsonb) AS l;

-- name: next_due
-- Seconds until the earliest PENDING instance of these steps is due (NULL if none).
-- Run with name and steps written in as constants, like claim_due.
SELECT extract(epoch FROM min(first.run_after) - statement_timestamp())::float8
  FROM unnest(%(steps)s::text[]) AS wanted(step)
 CROSS JOIN LATERAL (
       SELECT run_after FROM {schema}.instance
        WHERE status = 0 AND name = %(name)s AND step = wanted.step
        ORDER BY run_after
        LIMIT 1) AS first;

-- name: set_state
UPDATE {schema}.instance SET state = %(state)s::jsonb, updated_at = statement_timestamp()
 WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s;

-- name: run_on
-- An undelayed continuation on the same runner: the row stays RUNNING, the new step's
-- first attempt is this one; unless a cancel was asked. Return the new status.
-- run_after is left alone: it means nothing while RUNNING.
WITH moved AS (
    UPDATE {schema}.instance
       SET step = %(step)s, input = %(input)s::jsonb, state = coalesce(%(state)s::jsonb, state),
           status = CASE WHEN cancel_requested THEN 4 ELSE 1 END, called = false,
           runner_id = CASE WHEN cancel_requested THEN NULL ELSE runner_id END,
           attempts = CASE WHEN cancel_requested THEN 0 ELSE 1 END,
           error = NULL, updated_at = statement_timestamp()
     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
    RETURNING id, status)
SELECT status, CASE WHEN status = 4 THEN pg_notify(%(done_channel)s, id::text) END FROM moved;

-- name: schedule
-- A continuation that waits (or that a stopping runner hands on): back to PENDING.
WITH scheduled AS (
    UPDATE {schema}.instance
       SET step = %(step)s, input = %(input)s::jsonb, state = coalesce(%(state)s::jsonb, state),
           status = CASE WHEN cancel_requested THEN 4 ELSE 0 END, runner_id = NULL,
           attempts = 0, error = NULL, called = false,
           run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
    RETURNING id, name, status)
SELECT status, CASE WHEN status = 4 THEN pg_notify(%(done_channel)s, id::text)
                    ELSE pg_notify(%(channel)s, name) END
  FROM scheduled;

-- name: complete
-- The last step finished: COMPLETE, even if a cancel came too late to stop anything.
WITH completed AS (
    UPDATE {schema}.instance
       SET status = 2, state = coalesce(%(state)s::jsonb, state), runner_id = NULL, error = NULL,
           called = false, updated_at = statement_timestamp()
     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
    RETURNING id)
SELECT 2, pg_notify(%(done_channel)s, id::text) FROM completed;

-- name: fail
-- A failed attempt: back to PENDING after a backoff (status 0; CANCELLED instead if a
-- cancel was asked), or ERROR for good (status 3). Return the new status.
WITH failed AS (
    UPDATE {schema}.instance
       SET status = CASE WHEN %(status)s = 0 AND cancel_requested THEN 4 ELSE %(status)s END,
           error = %(error)s, runner_id = NULL,
           run_after = statement_timestamp() + make_interval(secs => %(delay)s), updated_at = statement_timestamp()
     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 AND attempts = %(attempt)s
    RETURNING id, status)
SELECT status, CASE WHEN status <> 0 THEN pg_notify(%(done_channel)s, id::text) END FROM failed;

-- name: release
-- Hand back claimed rows whose step never started: the claim did not count.
WITH released AS (
    UPDATE {schema}.instance
       SET status = CASE WHEN cancel_requested THEN 4 ELSE 0 END, runner_id = NULL,
           attempts = attempts - 1, updated_at = statement_timestamp()
     WHERE id = ANY(%(ids)s) AND runner_id = %(runner_id)s AND status = 1
    RETURNING id, name, status)
SELECT pg_notify(%(channel)s, name)
  FROM (SELECT DISTINCT name FROM released WHERE status = 0) AS names
UNION ALL
SELECT pg_notify(%(done_channel)s, id::text) FROM released WHERE status = 4;

-- name: register_runner
-- Again after being reaped, or from a second pool onto the same schema: merge what it serves.
INSERT INTO {schema}.runner (id, hostname, pid, serves, started_at, heartbeat_at, expires_at,
                            limits)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(serves)s::jsonb,
        statement_timestamp(), statement_timestamp(),
        statement_timestamp() + make_interval(secs => %(timeout)s), %(limits)s::jsonb)
ON CONFLICT (id) DO UPDATE
   SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at,
       serves = runner.serves || excluded.serves, limits = runner.limits || excluded.limits;

-- name: heartbeat
-- Each runner says how long its silence may last: reapers judge it by its own timeout.
UPDATE {schema}.runner
   SET heartbeat_at = statement_timestamp(),
       expires_at = statement_timestamp() + make_interval(secs => %(timeout)s)
 WHERE id = %(id)s;

-- name: set_runner_idle
-- Say whether this runner has a worker thread waiting for work: the API notifies only
-- while some runner is idle. Written only when it changes (no new row version, no WAL).
-- A runner going idle commits this first, then claims once more before it sleeps. A
-- start that did not see the flag took its snapshot before that commit, so that claim
-- finds its row, unless the start's transaction was still open then (a caller's
-- transaction, or an autocommit start in the instant of its commit): such a row waits
-- for a busy thread's next claim or the poll interval, as after a lost NOTIFY.
UPDATE {schema}.runner SET idle = %(idle)s WHERE id = %(id)s AND idle IS DISTINCT FROM %(idle)s;

-- name: delete_runner
DELETE FROM {schema}.runner WHERE id = %(id)s;

-- name: reap_runners
-- Forget runners silent for longer than their timeout (and `margin` seconds more).
DELETE FROM {schema}.runner
 WHERE expires_at < statement_timestamp() - make_interval(secs => %(margin)s)
RETURNING id;

-- name: recover_orphans
-- RUNNING rows whose runner row is gone (reaped, or deleted by a stop that left a step
-- running) go back to PENDING, and the workers wake. run_after stays as it was (in the
-- past): recovered work keeps its place at the head of the queue.
-- SKIP LOCKED: two reapers never wait on (or deadlock over) the same rows.
WITH orphan AS (
    SELECT i.id FROM {schema}.instance AS i
     WHERE i.status = 1
       AND NOT EXISTS (SELECT 1 FROM {schema}.runner AS r WHERE r.id = i.runner_id)
       FOR UPDATE SKIP LOCKED),
recovered AS (
    UPDATE {schema}.instance AS i
       SET status = CASE WHEN i.cancel_requested THEN 4 ELSE 0 END, runner_id = NULL,
           updated_at = statement_timestamp(),
           error = 'runner ' || coalesce(i.runner_id, '?') || ' stopped during step ' || i.step
      FROM orphan WHERE i.id = orphan.id
    RETURNING i.id, i.name, i.instance_id, i.status)
SELECT name, array_agg(instance_id), pg_notify(%(channel)s, name)
  FROM recovered WHERE status = 0 GROUP BY name
UNION ALL
SELECT name, ARRAY[instance_id], pg_notify(%(done_channel)s, id::text)
  FROM recovered WHERE status = 4;

-- name: release_stale
-- This runner's own RUNNING rows that none of its threads works on any more (an outcome
-- that could not be written, say during a database outage) go back to PENDING.
WITH stale AS (
    UPDATE {schema}.instance
       SET status = CASE WHEN cancel_requested THEN 4 ELSE 0 END, runner_id = NULL,
           updated_at = statement_timestamp()
     WHERE status = 1 AND runner_id = %(runner_id)s AND NOT (id = ANY(%(in_flight)s))
       AND updated_at < statement_timestamp() - make_interval(secs => %(age)s)
    RETURNING id, name, status)
SELECT name, count(*), pg_notify(%(channel)s, name) FROM stale WHERE status = 0 GROUP BY name
UNION ALL
SELECT name, 1, pg_notify(%(done_channel)s, id::text) FROM stale WHERE status = 4;
