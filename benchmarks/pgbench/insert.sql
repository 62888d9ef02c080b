-- One saga start at its least: an autocommit INSERT of a due row at step 'first', shaped
-- like saga's insert_instance (ON CONFLICT DO NOTHING, RETURNING id) but without the
-- NOTIFY. gen_random_uuid() keeps the instance ids unique across clients. Same setup as
-- claim_advance.sql; mixed with it 1:3 this is the live shape (benchmarks/live.py).
INSERT INTO instance (name, instance_id, step, input, run_after, created_at, updated_at)
VALUES ('pgbench', gen_random_uuid()::text, 'first', '{"n": 1}'::jsonb,
        statement_timestamp(), statement_timestamp(), statement_timestamp())
ON CONFLICT (name, instance_id) DO NOTHING
RETURNING id;
