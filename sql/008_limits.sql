-- Concurrency and rate limits, enforced when rows are claimed (see claim_limited below).
--
-- key      the instance's concurrency key (an account, a tenant), set by start(key=...).
-- limited  set when a claim that enforces limits took the row: the RUNNING rows so
--          marked are what "slots in use" counts. There is no counter to keep right:
--          a slot is a RUNNING row, so whatever ends a RUNNING row (an outcome, a
--          cancel, the reaper after a kill -9, release_stale) frees its slot with it,
--          and no crash can leave a slot taken by nobody.
ALTER TABLE {schema}.instance
    ADD COLUMN key text,
    ADD COLUMN limited boolean NOT NULL DEFAULT false;

-- Due rows by key: the claim walks the distinct keys of a step (one index descent per
-- key, however many rows wait behind a saturated one). Only rows with a key are
-- indexed, so sagas without keys pay nothing for it.
CREATE INDEX instance_key_due_idx ON {schema}.instance (name, step, key, run_after)
    WHERE status = 0 AND key IS NOT NULL;

-- Slots in use: the RUNNING rows claimed under limits (a handful), by step and key.
CREATE INDEX instance_limited_idx ON {schema}.instance (name, step, key)
    WHERE status = 1 AND limited;

-- The starts of rate-limited steps in the current window (a sliding log: at most the
-- rate's N rows per limit; older ones are deleted by the claim that looks).
CREATE TABLE {schema}.limit_start (
    name text        NOT NULL,  -- the saga
    lim  text        NOT NULL,  -- the limit's id (Limit.id)
    at   timestamptz NOT NULL
);
CREATE INDEX limit_start_idx ON {schema}.limit_start (name, lim, at);

-- The limits each runner enforces, by saga name (as claim_limited reads them): what
-- `stats` reports on, since limits are declared in code.
ALTER TABLE {schema}.runner ADD COLUMN limits jsonb NOT NULL DEFAULT '{{}}';

-- Claim up to p_limit due rows of p_steps of saga p_name for runner p_runner, within
-- p_limits: a JSON array of {{"id", "kind" (key | running | rate), "n", "per", "steps"}}.
-- Rows come back as (1, id, instance_id, step, input, state, attempts, key, NULL); when
-- none is claimed, one row (2, ..., seconds until it is worth looking again, or NULL
-- when only a freed slot can help, which its holder's next claim takes).
--
-- Locking. Each limit is counted after a transaction-scoped lock on it, by a statement
-- of its own: in READ COMMITTED every statement of a VOLATILE function takes a new
-- snapshot, so the count sees every claim committed by the previous holder of the lock
-- (locks are released after the commit is visible). A single statement could not: its
-- snapshot would predate the lock wait. Step-wide limits (running, rate) are waited for,
-- all of them first, in limit id order, so claimers never deadlock;
-- per-key locks are only tried: a key another claimer is looking at is skipped (it
-- takes that key's free slot). No session-level lock: this works through a pooler in
-- transaction mode. The locks and the rows' FOR UPDATE all end at the claim's commit.
--
-- Fairness. Keys are visited in key order starting after p_after (the last key the
-- calling thread claimed) and wrapping around: round-robin, whatever each key's backlog.
CREATE FUNCTION {schema}.claim_limited(
    p_name text, p_runner text, p_steps text[], p_limit int, p_limits jsonb, p_after text)
RETURNS TABLE (kind int, id bigint, instance_id text, step text, input text, state text,
               attempts int, key text, trace text, due float8)
LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
    v_left int := p_limit;     -- rows still wanted
    v_step text;
    v_allow int;               -- rows this step may still take (step-wide limits)
    v_lim jsonb;
    v_free int;
    v_first timestamptz;
    v_wait float8;             -- seconds until a rate window lets a start through
    v_keylims jsonb;
    v_key text;
    v_sat text[];              -- keys full at the first look (see below)
    v_pass int;
    v_from text;               -- a pass visits the keys > v_from (and <= v_to)
    v_to text;
    v_got int;
    v_taken int;               -- rows of this step claimed
    v_head text;
    v_ok boolean;
    -- The advisory lock keys: by saga name and limit (and key). Sagas of one name in
    -- two schemas of a database share them: they may wait on each other, never count
    -- each other's rows.
    v_salt text := 'pgsaga' || chr(31) || p_name || chr(31);
BEGIN
    -- Every step-wide limit of these steps is locked first, in id order: one order for
    -- every claimer, whatever steps each serves, so that no two wait on each other.
    FOR v_lim IN SELECT l FROM jsonb_array_elements(p_limits) AS l
                  WHERE l ->> 'kind' <> 'key'
                    AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(l -> 'steps') AS t
                                 WHERE t = ANY(p_steps))
                  ORDER BY l ->> 'id' LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(v_salt || (v_lim ->> 'id'), 0));
    END LOOP;
    -- The steps with a due row, each with the key of its oldest due row: one look-up
    -- for them all (a step with nothing due costs the claim nothing more).
    FOR v_step, v_head IN
        SELECT wanted.s, head.key FROM unnest(p_steps) AS wanted(s)
         CROSS JOIN LATERAL (
               SELECT d.key FROM {schema}.instance AS d
                WHERE d.status = 0 AND d.name = p_name AND d.step = wanted.s
                  AND d.run_after <= statement_timestamp()
                ORDER BY d.run_after LIMIT 1) AS head
         ORDER BY wanted.s LOOP
        EXIT WHEN v_left <= 0;
        v_allow := v_left;
        FOR v_lim IN SELECT l FROM jsonb_array_elements(p_limits) AS l
                      WHERE l ->> 'kind' <> 'key' AND l -> 'steps' ? v_step
                      ORDER BY l ->> 'id' LOOP
            IF v_lim ->> 'kind' = 'running' THEN
                SELECT (v_lim ->> 'n')::int - count(*) INTO v_free
                  FROM {schema}.instance AS i
                 WHERE i.status = 1 AND i.limited AND i.name = p_name
                   AND i.step IN (SELECT jsonb_array_elements_text(v_lim -> 'steps'));
            ELSE
                DELETE FROM {schema}.limit_start AS s
                 WHERE s.name = p_name AND s.lim = v_lim ->> 'id'
                   AND s.at <= clock_timestamp()
                              - make_interval(secs => (v_lim ->> 'per')::float8);
                SELECT (v_lim ->> 'n')::int - count(*), min(s.at) INTO v_free, v_first
                  FROM {schema}.limit_start AS s
                 WHERE s.name = p_name AND s.lim = v_lim ->> 'id';
                IF v_free <= 0 THEN
                    v_wait := least(v_wait, greatest(0.001, extract(epoch FROM
                        v_first + make_interval(secs => (v_lim ->> 'per')::float8)
                        - clock_timestamp())::float8));
                END IF;
            END IF;
            v_allow := least(v_allow, v_free);
        END LOOP;
        CONTINUE WHEN v_allow <= 0;
        v_taken := 0;
        SELECT jsonb_agg(l ORDER BY l ->> 'id') INTO v_keylims
          FROM jsonb_array_elements(p_limits) AS l
         WHERE l ->> 'kind' = 'key' AND l -> 'steps' ? v_step;
        IF v_keylims IS NULL THEN
            RETURN QUERY
            WITH c AS (
                UPDATE {schema}.instance AS i
                   SET status = 1, runner_id = p_runner, attempts = i.attempts + 1,
                       limited = true, claims = i.claims + 1, updated_at = clock_timestamp()
                 WHERE i.id = ANY(ARRAY(
                        SELECT d.id FROM {schema}.instance AS d
                         WHERE d.status = 0 AND d.name = p_name AND d.step = v_step
                           AND d.run_after <= statement_timestamp()
                         ORDER BY d.run_after LIMIT v_allow
                           FOR UPDATE SKIP LOCKED))
                RETURNING i.id, i.instance_id, i.step, i.input::text, i.state::text,
                          i.attempts, i.key,
                          CASE WHEN i.trace_parent IS NOT NULL OR (i.called AND i.trace_call IS NOT NULL)
                        THEN concat_ws(' ', coalesce(i.trace_parent, '-'), i.claims,
                                       CASE WHEN i.called THEN i.trace_call END) END AS trace)
            SELECT 1, c.id, c.instance_id, c.step, c.input, c.state, c.attempts, c.key,
                   c.trace, NULL::float8 FROM c;
            GET DIAGNOSTICS v_taken = ROW_COUNT;
        ELSE
            -- Rows without a key (started before the limit was declared) are bound by
            -- no key: claimed when the oldest due row is one of them.
            IF v_head IS NULL THEN
                RETURN QUERY
                WITH c AS (
                    UPDATE {schema}.instance AS i
                       SET status = 1, runner_id = p_runner, attempts = i.attempts + 1,
                           limited = true, claims = i.claims + 1, updated_at = clock_timestamp()
                     WHERE i.id = ANY(ARRAY(
                            SELECT d.id FROM {schema}.instance AS d
                             WHERE d.status = 0 AND d.name = p_name AND d.step = v_step
                               AND d.key IS NULL AND d.run_after <= statement_timestamp()
                             ORDER BY d.run_after LIMIT v_allow
                               FOR UPDATE SKIP LOCKED))
                    RETURNING i.id, i.instance_id, i.step, i.input::text, i.state::text,
                              i.attempts, i.key,
                          CASE WHEN i.trace_parent IS NOT NULL OR (i.called AND i.trace_call IS NOT NULL)
                        THEN concat_ws(' ', coalesce(i.trace_parent, '-'), i.claims,
                                       CASE WHEN i.called THEN i.trace_call END) END AS trace)
                SELECT 1, c.id, c.instance_id, c.step, c.input, c.state, c.attempts, c.key,
                       c.trace, NULL::float8 FROM c;
                GET DIAGNOSTICS v_taken = ROW_COUNT;
            END IF;
            -- Keys whose slots were all taken in this statement's first look: passed
            -- without a lock or a count. Only a hint (a slot freed since is left to the
            -- thread that freed it, which claims again at once); a key not in it is
            -- locked and counted before anything of it is claimed.
            v_sat := ARRAY(
                SELECT r.key FROM jsonb_array_elements(v_keylims) AS l
                 CROSS JOIN LATERAL (
                       SELECT i.key FROM {schema}.instance AS i
                        WHERE i.status = 1 AND i.limited AND i.name = p_name
                          AND i.key IS NOT NULL
                          AND i.step IN (SELECT jsonb_array_elements_text(l -> 'steps'))
                        GROUP BY i.key HAVING count(*) >= (l ->> 'n')::int) AS r);
            -- Two passes: the keys after p_after, then from the first key up to p_after.
            FOR v_pass IN 1..2 LOOP
                EXIT WHEN v_allow - v_taken <= 0 OR (v_pass = 2 AND p_after IS NULL);
                v_from := CASE WHEN v_pass = 1 THEN coalesce(p_after, '') ELSE '' END;
                v_to := CASE WHEN v_pass = 2 THEN p_after END;
                -- The keys with PENDING rows of this step, in order: a loose index scan
                -- of instance_key_due_idx, one descent per key however many rows wait
                -- behind it, evaluated as far as the loop reads it.
                FOR v_key IN
                    WITH RECURSIVE k(key) AS (
                        SELECT (SELECT min(d.key) FROM {schema}.instance AS d
                                 WHERE d.status = 0 AND d.name = p_name AND d.step = v_step
                                   AND d.key > v_from)
                        UNION ALL
                        SELECT (SELECT min(d.key) FROM {schema}.instance AS d
                                 WHERE d.status = 0 AND d.name = p_name AND d.step = v_step
                                   AND d.key > k.key)
                          FROM k WHERE k.key IS NOT NULL AND (v_to IS NULL OR k.key < v_to))
                    SELECT k.key FROM k
                     WHERE k.key IS NOT NULL AND (v_to IS NULL OR k.key <= v_to)
                       AND k.key <> ALL(v_sat)
                LOOP
                    v_free := v_allow - v_taken;
                    v_ok := true;
                    FOR v_lim IN SELECT l FROM jsonb_array_elements(v_keylims) AS l LOOP
                        IF NOT pg_try_advisory_xact_lock(hashtextextended(
                                v_salt || (v_lim ->> 'id') || chr(31) || v_key, 0)) THEN
                            v_ok := false;  -- another claimer is at this key: it takes it
                            EXIT;
                        END IF;
                        SELECT least(v_free, (v_lim ->> 'n')::int - count(*)) INTO v_free
                          FROM {schema}.instance AS i
                         WHERE i.status = 1 AND i.limited AND i.name = p_name
                           AND i.key = v_key
                           AND i.step IN (SELECT jsonb_array_elements_text(v_lim -> 'steps'));
                    END LOOP;
                    CONTINUE WHEN NOT v_ok OR v_free <= 0;
                    RETURN QUERY
                    WITH c AS (
                        UPDATE {schema}.instance AS i
                           SET status = 1, runner_id = p_runner, attempts = i.attempts + 1,
                               limited = true, claims = i.claims + 1, updated_at = clock_timestamp()
                         WHERE i.id = ANY(ARRAY(
                                SELECT d.id FROM {schema}.instance AS d
                                 WHERE d.status = 0 AND d.name = p_name AND d.step = v_step
                                   AND d.key = v_key AND d.run_after <= statement_timestamp()
                                 ORDER BY d.run_after LIMIT v_free
                                   FOR UPDATE SKIP LOCKED))
                        RETURNING i.id, i.instance_id, i.step, i.input::text, i.state::text,
                                  i.attempts, i.key,
                          CASE WHEN i.trace_parent IS NOT NULL OR (i.called AND i.trace_call IS NOT NULL)
                        THEN concat_ws(' ', coalesce(i.trace_parent, '-'), i.claims,
                                       CASE WHEN i.called THEN i.trace_call END) END AS trace)
                    SELECT 1, c.id, c.instance_id, c.step, c.input, c.state, c.attempts,
                           c.key, c.trace, NULL::float8 FROM c;
                    GET DIAGNOSTICS v_got = ROW_COUNT;
                    v_taken := v_taken + v_got;
                    EXIT WHEN v_allow - v_taken <= 0;
                END LOOP;
            END LOOP;
        END IF;
        IF v_taken > 0 THEN
            INSERT INTO {schema}.limit_start (name, lim, at)
            SELECT p_name, l ->> 'id', clock_timestamp()
              FROM jsonb_array_elements(p_limits) AS l, generate_series(1, v_taken)
             WHERE l ->> 'kind' = 'rate' AND l -> 'steps' ? v_step;
        END IF;
        v_left := v_left - v_taken;
    END LOOP;
    IF v_left = p_limit THEN
        -- Nothing claimed: when to look again. A row due later: when it is due; a
        -- rate window: when it lets one through; a due row held by a concurrency
        -- limit: no time (NULL), the slot's holder claims it when it finishes.
        RETURN QUERY
        SELECT 2, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::int,
               NULL::text, NULL::text, least(v_wait, (
                   SELECT extract(epoch FROM min(f.run_after) - statement_timestamp())::float8
                     FROM unnest(p_steps) AS wanted(s)
                    CROSS JOIN LATERAL (
                          SELECT d.run_after FROM {schema}.instance AS d
                           WHERE d.status = 0 AND d.name = p_name AND d.step = wanted.s
                             AND d.run_after > statement_timestamp()
                           ORDER BY d.run_after LIMIT 1) AS f));
    END IF;
END
$claim$;
