-- Ten saga steps per transaction: claim the ten oldest due rows with FOR UPDATE SKIP
-- LOCKED and write their continuations in one more statement, then commit once. Each
-- transaction is ten steps. Needs -M prepared: :claimed is an array bound as a
-- parameter. Same setup as claim_advance.sql.
BEGIN;
WITH claimed AS (
    UPDATE instance
       SET status = 1, runner_id = 'pgbench', attempts = attempts + 1,
           updated_at = clock_timestamp()
     WHERE id IN (SELECT id FROM instance
                   WHERE status = 0 AND name = 'pgbench'
                     AND step = 'first'
                     AND run_after <= statement_timestamp()
                   ORDER BY run_after
                   LIMIT 10
                     FOR UPDATE SKIP LOCKED)
    RETURNING id)
SELECT array_agg(id) AS claimed FROM claimed \gset
UPDATE instance
   SET step = 'first', input = '{"n": 1}'::jsonb, status = 0, runner_id = NULL,
       attempts = 0, error = NULL, run_after = statement_timestamp(),
       updated_at = statement_timestamp()
 WHERE id = ANY(CAST(:claimed AS bigint[])) AND runner_id = 'pgbench' AND status = 1;
END;
