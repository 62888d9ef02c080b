-- insert.sql plus the pg_notify that saga's insert_instance sends in the same statement
-- (to a channel nobody listens to here): what a NOTIFY adds to every start's commit.
WITH created AS (
    INSERT INTO instance (name, instance_id, step, input, run_after, created_at, updated_at)
    VALUES ('pgbench', gen_random_uuid()::text, 'first', '{"n": 1}'::jsonb,
            statement_timestamp(), statement_timestamp(), statement_timestamp())
    ON CONFLICT (name, instance_id) DO NOTHING
    RETURNING id)
SELECT id, pg_notify('pgsaga_pgbench', 'pgbench') FROM created;
