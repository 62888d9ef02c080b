-- CANCELLED (status 4), the one extension of the original state machine; the flag that
-- asks the runner of a RUNNING instance to end it at the next step boundary; and the flag
-- that keeps a second call() from replacing a first one that has not run yet.
--
-- The widened CHECK is added NOT VALID: the rows already there passed the narrower one,
-- and validating would scan the whole table under this migration's exclusive lock.
-- Rows written from now on are checked all the same.
ALTER TABLE {schema}.instance
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN called boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT instance_status_check,
    ADD CONSTRAINT instance_status_check CHECK (status BETWEEN 0 AND 4) NOT VALID;

COMMENT ON COLUMN {schema}.instance.status IS
    '0 PENDING, 1 RUNNING, 2 COMPLETE, 3 ERROR, 4 CANCELLED';
COMMENT ON COLUMN {schema}.instance.cancel_requested IS
    'cancel() was called while RUNNING: the runner ends it CANCELLED at the step boundary';
COMMENT ON COLUMN {schema}.instance.called IS
    'the next step was set by call() and has not finished yet: another call() must wait';
