-- The queries of saga.telemetry.gauges, read when metrics are scraped. Each is bounded,
-- whatever the size of the table: one short range of an index per step, walked at most
-- `cap` entries, or the small runner table.

-- name: due_backlog
-- For each step of a saga: how many PENDING rows are due (counted up to `cap`, so the
-- figure saturates at `cap` rather than the query growing with the backlog), and for how
-- many seconds the earliest has been due (0 when none is). Both use instance_due_idx
-- (name, step, run_after) WHERE status = 0: a range scan from its start, no sort.
SELECT wanted.step,
       (SELECT count(*) FROM (
               SELECT 1 FROM {schema}.instance
                WHERE status = 0 AND name = %(name)s AND step = wanted.step
                  AND run_after <= statement_timestamp()
                LIMIT %(cap)s) AS due)::bigint,
       coalesce((SELECT greatest(0, extract(epoch FROM statement_timestamp() - run_after))
                   FROM {schema}.instance
                  WHERE status = 0 AND name = %(name)s AND step = wanted.step
                    AND run_after <= statement_timestamp()
                  ORDER BY run_after
                  LIMIT 1), 0)::float8
  FROM unnest(%(steps)s::text[]) AS wanted(step);

-- name: live_runners
-- Runners whose heartbeat has not expired (one row per worker process).
SELECT count(*)::bigint FROM {schema}.runner WHERE expires_at > statement_timestamp();
