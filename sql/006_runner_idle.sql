-- Whether a runner has a worker thread waiting for work. start(), start_many(), call()
-- and retry() send their NOTIFY only while some runner is idle: a NOTIFY takes a
-- server-wide lock at commit, so one in every start() serializes the commits of every
-- caller, and it wakes no one when no runner waits (busy threads claim again as soon as
-- their step ends; a runner that starts looks for due rows first).
--
-- A runner row is idle until its runner says otherwise (Store.set_idle), so a runner
-- that never does is woken on every start, as before. Adding a column with a constant
-- default rewrites nothing.
ALTER TABLE {schema}.runner ADD COLUMN IF NOT EXISTS idle boolean NOT NULL DEFAULT true;
