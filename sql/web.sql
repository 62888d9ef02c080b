-- The queries of the dashboard (saga.web) and of the step log switch (saga.steplog), in
-- the format of queries.sql. Blocks named filter_* are conditions that saga.web.queries
-- appends (with AND) to a query ending in `WHERE true`, followed by that query's
-- `_rest` block if it has one: values stay parameters, always.
-- Times are statement_timestamp(), the database clock.

-- name: steplog_enabled
-- 'D' is disabled; 'O', 'R' and 'A' fire (origin, replica, always).
SELECT tgenabled <> 'D' FROM pg_catalog.pg_trigger
 WHERE tgrelid = to_regclass(%(table)s) AND tgname = 'step_log';

-- name: steplog_on
ALTER TABLE {schema}.instance ENABLE TRIGGER step_log;

-- name: steplog_off
ALTER TABLE {schema}.instance DISABLE TRIGGER step_log;

-- name: steplog_history
SELECT id, step, attempt, runner_id, started_at, ended_at, status, next_step, error,
       extract(epoch FROM ended_at - started_at)::float8 AS seconds
  FROM {schema}.step_log
 WHERE instance = %(instance)s
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: table_estimate
-- The planner's row count of instance (pg_class.reltuples, kept by VACUUM and ANALYZE);
-- before the first of them (-1), a guess from the table's size at 100 bytes a row.
SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint
            ELSE pg_catalog.pg_relation_size(oid) / 100 END
  FROM pg_catalog.pg_class WHERE oid = to_regclass(%(table)s);

-- name: saga_names
-- The distinct saga names by a walk of the (name, instance_id) index, one probe per name.
WITH RECURSIVE names AS (
    SELECT min(name) AS name FROM {schema}.instance
    UNION ALL
    SELECT (SELECT min(name) FROM {schema}.instance WHERE name > names.name)
      FROM names WHERE names.name IS NOT NULL)
SELECT name FROM names WHERE name IS NOT NULL;

-- name: count_by_status
-- Exact counts: the whole table is read, so only for small tables.
SELECT name, status, count(*) FROM {schema}.instance GROUP BY name, status;

-- name: count_one_status
-- Estimated with EXPLAIN on large tables (see saga.web.queries.count).
SELECT count(*) FROM {schema}.instance WHERE name = %(name)s AND status = %(status)s;

-- name: running_counts
-- RUNNING rows are few and indexed (instance_running_idx): always counted.
SELECT name, count(*) FROM {schema}.instance WHERE status = 1 GROUP BY name;

-- name: due_steps
-- Every (saga, step) that has a due PENDING row, found by walking instance_due_idx
-- (name, step, run_after) one probe per pair; with how long its oldest has waited (the
-- lag) and whether a live runner serves it. `serves` is {saga: [steps]}; `?` is jsonb's
-- "the array holds this string".
WITH RECURSIVE pairs AS (
    (SELECT name, step FROM {schema}.instance WHERE status = 0
      ORDER BY name, step LIMIT 1)
    UNION ALL
    SELECT nxt.name, nxt.step
      FROM pairs CROSS JOIN LATERAL (
           SELECT name, step FROM {schema}.instance
            WHERE status = 0 AND (name, step) > (pairs.name, pairs.step)
            ORDER BY name, step LIMIT 1) AS nxt)
SELECT p.name, p.step,
       extract(epoch FROM statement_timestamp() - first.run_after)::float8 AS lag,
       EXISTS (SELECT 1 FROM {schema}.runner AS r
                WHERE r.expires_at >= statement_timestamp()
                  AND coalesce(r.serves -> p.name, '[]'::jsonb) ? p.step) AS served
  FROM pairs AS p
 CROSS JOIN LATERAL (
       SELECT run_after FROM {schema}.instance
        WHERE status = 0 AND name = p.name AND step = p.step
        ORDER BY run_after LIMIT 1) AS first
 WHERE first.run_after <= statement_timestamp()
 ORDER BY p.name, p.step;

-- name: count_due
-- `now` is the database's, passed in so that the planner's estimate can use the
-- histogram of run_after (statement_timestamp() in the query would hide it).
SELECT count(*) FROM {schema}.instance
 WHERE status = 0 AND name = %(name)s AND step = %(step)s AND run_after <= %(now)s;

-- name: now
SELECT statement_timestamp();

-- name: list_runners
SELECT id, hostname, pid, serves, started_at, heartbeat_at, expires_at,
       extract(epoch FROM statement_timestamp() - heartbeat_at)::float8 AS heartbeat_age,
       expires_at >= statement_timestamp() AS live
  FROM {schema}.runner
 ORDER BY hostname, pid, id;

-- name: steps_per_minute
-- Steps that ended in each of the last 60 minutes (0: this minute), from the step log.
SELECT floor(extract(epoch FROM statement_timestamp() - ended_at) / 60)::int, count(*)
  FROM {schema}.step_log
 WHERE ended_at > statement_timestamp() - interval '1 hour'
 GROUP BY 1;

-- name: finished_per_minute
-- Without the step log: instances that finished (and were not touched since) in each
-- of the last 60 minutes, by instance_updated_idx.
SELECT floor(extract(epoch FROM statement_timestamp() - updated_at) / 60)::int, count(*)
  FROM {schema}.instance
 WHERE updated_at > statement_timestamp() - interval '1 hour' AND status >= 2
 GROUP BY 1;

-- name: get_by_id
SELECT id, name, instance_id, step, status, input::text AS input, state::text AS state,
       run_after, runner_id, attempts, error, created_at, updated_at, cancel_requested,
       called, length(input::text) AS input_length, length(state::text) AS state_length
  FROM {schema}.instance WHERE id = %(id)s;

-- name: list_instances
-- The filters asked for follow; the order is instance_updated_idx's, so that a page is
-- an index range, however big the table.
SELECT id, name, instance_id, step, status, attempts, run_after, updated_at,
       left(error, 2000) AS error
  FROM {schema}.instance
 WHERE true
-- name: list_instances_rest
 ORDER BY updated_at DESC, id DESC
 LIMIT %(limit)s;

-- name: count_instances
SELECT count(*) FROM {schema}.instance WHERE true

-- name: filter_saga
name = %(saga)s
-- name: filter_status
status = %(status)s
-- name: filter_failed
-- Implies instance_failed_idx's predicate, so that the planner may use it.
status >= 3
-- name: filter_step
step = %(step)s
-- name: filter_prefix
instance_id LIKE %(prefix)s
-- name: filter_since
updated_at >= %(since)s
-- name: filter_until
updated_at < %(until)s
-- name: filter_before
(updated_at, id) < (%(before_at)s, %(before_id)s)
-- name: filter_retryable
status = 3
-- name: filter_cancellable
status IN (0, 1) AND NOT cancel_requested

-- name: bulk_retry
-- Replay up to `batch` ERROR instances that the filter selects, as saga.retry does
-- (queries.sql retry_instance); SKIP LOCKED passes rows a worker or another action holds.
-- A replayed row no longer matches status = 3, so the caller repeats until none is left.
WITH target AS (
    SELECT id FROM {schema}.instance WHERE true
-- name: bulk_retry_rest
     LIMIT %(batch)s FOR UPDATE SKIP LOCKED),
retried AS (
    UPDATE {schema}.instance AS i
       SET status = 0, attempts = 0, error = NULL, runner_id = NULL, cancel_requested = false,
           run_after = statement_timestamp(), updated_at = statement_timestamp()
      FROM target WHERE i.id = target.id AND i.status = 3
    RETURNING i.name)
SELECT count(*), (SELECT count(*) FROM (SELECT pg_notify(%(channel)s, name)
                                          FROM (SELECT DISTINCT name FROM retried) AS n) AS x)
  FROM retried;

-- name: bulk_cancel
-- Cancel up to `batch` PENDING or RUNNING instances that the filter selects, as
-- saga.cancel does (queries.sql cancel_instance): PENDING ones at once, RUNNING ones
-- flagged for their runner (and then no longer selected: NOT cancel_requested).
WITH target AS (
    SELECT id, status FROM {schema}.instance WHERE true
-- name: bulk_cancel_rest
     LIMIT %(batch)s FOR UPDATE SKIP LOCKED),
cancelled AS (
    UPDATE {schema}.instance AS i
       SET status = CASE WHEN target.status = 0 THEN 4 ELSE 1 END,
           cancel_requested = (target.status = 1), updated_at = statement_timestamp()
      FROM target WHERE i.id = target.id AND i.status IN (0, 1)
    RETURNING i.id, target.status AS was)
SELECT count(*), count(CASE WHEN was = 0 THEN pg_notify(%(done_channel)s, id::text) END)
  FROM cancelled;
