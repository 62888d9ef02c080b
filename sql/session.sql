-- Session settings of a worker thread's own connection (saga.store.Store.plan_*), apart
-- from queries.sql because they name no table.

-- name: plan_generically
-- A worker thread's own connection runs the same few statements over and over. Left to
-- itself (plan_cache_mode = auto) the server plans the claim afresh on every call,
-- which costs more than running it; its generic plan is as good (see
-- tests/test_claim_plan.py). Set once per connection, undone by plan_as_usual.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false);

-- name: plan_as_usual
-- Back to the server's default, before the connection returns to the pool.
RESET plan_cache_mode;

-- name: plan_as_usual_here
-- The server's default until the end of this transaction: a `conn` step's own statements.
SET LOCAL plan_cache_mode TO DEFAULT;
