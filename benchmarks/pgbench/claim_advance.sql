-- One saga step at its least: claim the oldest due row with FOR UPDATE SKIP LOCKED and
-- write its continuation, in one transaction. The continuation makes the row due again,
-- at the back of the queue, so the table never runs dry. Every row is at one step
-- ('first'): the claim is a single range of the due index, however that index is built
-- (by name and run_after, or by name, step and run_after), which is the least a claim
-- can cost. Run with -M prepared (psycopg prepares repeated statements too) and
-- PGOPTIONS='-c search_path=<schema>' on a migrated schema seeded with due rows of the
-- saga 'pgbench' (see benchmarks/limit.py).
BEGIN;
UPDATE instance
   SET status = 1, runner_id = 'pgbench', attempts = attempts + 1,
       updated_at = clock_timestamp()
 WHERE id IN (SELECT id FROM instance
               WHERE status = 0 AND name = 'pgbench'
                 AND step = 'first'
                 AND run_after <= statement_timestamp()
               ORDER BY run_after
               LIMIT 1
                 FOR UPDATE SKIP LOCKED)
RETURNING id AS claimed, attempts AS attempt \gset
UPDATE instance
   SET step = 'first', input = '{"n": 1}'::jsonb, status = 0, runner_id = NULL,
       attempts = 0, error = NULL, run_after = statement_timestamp(),
       updated_at = statement_timestamp()
 WHERE id = :claimed AND runner_id = 'pgbench' AND status = 1 AND attempts = :attempt;
END;
