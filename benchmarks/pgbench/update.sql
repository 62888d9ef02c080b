-- The floor: one autocommit UPDATE per step, writing what a continuation writes (the
-- next step, its input, run_after) to a random seeded row. Pass -D first=<id>
-- -D last=<id> (the seeded id range). Same setup as claim_advance.sql.
\set id random(:first, :last)
UPDATE instance
   SET step = 'first', input = '{"n": 1}'::jsonb, attempts = 1, error = NULL,
       run_after = statement_timestamp(), updated_at = statement_timestamp()
 WHERE id = :id;
