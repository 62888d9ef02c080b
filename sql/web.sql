-- The queries of the dashboard (saga.web) and of the step log switch (saga.steplog), in
-- the format of queries.sql. Blocks named filter_* and order_* are fragments that
-- saga.web.queries joins into list_instances' {where}: values stay parameters, always.
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
