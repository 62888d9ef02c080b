-- The due-row index gains the step, between the saga name and run_after: a claim now
-- looks for due rows step by step (one short index range per step the worker runs), so
-- a backlog of a step no worker serves any more (a deploy that removed or renamed it)
-- costs nothing, instead of being walked through by every claim.
--
-- This builds the index inside the migration's transaction, which blocks writes to the
-- table while it runs. On a large table, build it first with
--   CREATE INDEX CONCURRENTLY instance_due_step_idx ON <schema>.instance
--       (name, step, run_after) WHERE status = 0;
-- and this migration only swaps the names.
DROP INDEX {schema}.instance_due_idx;
CREATE INDEX IF NOT EXISTS instance_due_step_idx ON {schema}.instance (name, step, run_after)
    WHERE status = 0;
ALTER INDEX {schema}.instance_due_step_idx RENAME TO instance_due_idx;
