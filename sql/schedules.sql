-- The queries of saga.schedules.store, one per "-- name:" block. {schema} is the schema.
-- A ticker serves the schedules its code declares: `names` and `digests` (the md5 of
-- each definition, shorter to send every second than the definitions) are two parallel
-- arrays, and it only ever claims a row whose stored definition is its own, so
-- two deployments that disagree (mid rolling deploy) never tick the same row by two
-- different rules. Times are the database's: statement_timestamp().

-- name: declare_schedules
-- Record what this deployment declares for one saga: new schedules are inserted with no
-- next tick (the ticker computes it from now), changed ones take the new definition
-- (a changed timing also resets next_tick, so it takes effect at once), and the saga's
-- schedules this deployment does not declare are retired: they stop ticking. A row that
-- already holds this definition is left as it is (no write).
WITH declared AS (
    SELECT * FROM unnest(%(names)s::text[], %(steps)s::text[], %(expressions)s::text[],
                         %(zones)s::text[], %(definitions)s::text[], %(lateness)s::float8[])
        AS d(name, step, expression, tz, definition, max_lateness)
), upserted AS (
    INSERT INTO {schema}.schedule AS s (saga, name, step, expression, tz, definition,
                                        max_lateness)
    SELECT %(saga)s, name, step, expression, tz, definition, max_lateness FROM declared
    ON CONFLICT (saga, name) DO UPDATE
       SET step = excluded.step, expression = excluded.expression, tz = excluded.tz,
           definition = excluded.definition, max_lateness = excluded.max_lateness,
           retired_at = NULL, updated_at = statement_timestamp(),
           next_tick = CASE WHEN (s.expression, s.tz) = (excluded.expression, excluded.tz)
                            THEN s.next_tick END
     WHERE s.definition <> excluded.definition OR s.retired_at IS NOT NULL
    RETURNING s.name)
UPDATE {schema}.schedule
   SET retired_at = statement_timestamp(), updated_at = statement_timestamp()
 WHERE saga = %(saga)s AND retired_at IS NULL AND name <> ALL(%(names)s::text[]);

-- name: stored_schedules
-- The saga's schedules that are not retired: a saga that declares none needs to write
-- only when this finds some (to retire them), so a role without grants on the table
-- can run it.
SELECT name FROM {schema}.schedule
 WHERE saga = %(saga)s AND retired_at IS NULL
 ORDER BY name;

-- name: retire_schedules
-- Retire the saga's schedules outside `names` (what declare_schedules does to them, for
-- a saga that declares none: an UPDATE alone); return their names.
UPDATE {schema}.schedule
   SET retired_at = statement_timestamp(), updated_at = statement_timestamp()
 WHERE saga = %(saga)s AND retired_at IS NULL AND name <> ALL(%(names)s::text[])
RETURNING name;

-- name: claim_schedules
-- Lock up to `limit` of our due schedule rows (next_tick NULL counts as due: it is to be
-- computed), with the status of each one's last instance (for overlap = skip). SKIP
-- LOCKED: a row another ticker holds is its to tick; once it commits, a re-check of
-- the WHERE clause against the new row version leaves it out here (not due any more).
-- The last instance's status is a subquery, a look-up by the whole unique key for each
-- row: as a join, a plan made before the table's statistics caught up can walk every
-- instance of the saga for each schedule.
SELECT s.name, s.next_tick, s.last_tick, statement_timestamp(),
       (SELECT i.status FROM {schema}.instance AS i
         WHERE i.name = s.saga AND i.instance_id = s.last_instance)
  FROM {schema}.schedule AS s
  JOIN unnest(%(names)s::text[], %(digests)s::text[]) AS d(name, digest)
    ON s.name = d.name AND md5(s.definition) = d.digest
 WHERE s.saga = %(saga)s AND NOT s.paused AND s.retired_at IS NULL
   AND coalesce(s.next_tick, '-infinity') <= statement_timestamp()
 ORDER BY s.next_tick NULLS FIRST
 LIMIT %(limit)s
   FOR UPDATE OF s SKIP LOCKED;

-- name: advance_schedules
-- In the claim's transaction, for all the rows it locked at once: create the tick
-- instances (PENDING, due now; ids `<schedule>@<tick>`, and an id that exists already is
-- left alone), move each row on to its next tick, and wake the workers on commit if
-- anything was created. Return the ids created.
WITH made AS (
    SELECT * FROM unnest(%(schedules)s::text[], %(steps)s::text[], %(instances)s::text[],
                         %(inputs)s::text[]) WITH ORDINALITY AS m(name, step, instance_id, input, n)
), created AS (
    INSERT INTO {schema}.instance (name, instance_id, step, input, run_after, created_at,
                                   updated_at)
    SELECT %(saga)s, m.instance_id, m.step, m.input::jsonb, statement_timestamp(),
           statement_timestamp(), statement_timestamp()
      FROM made AS m
     ORDER BY m.n
    ON CONFLICT (name, instance_id) DO NOTHING
    RETURNING instance_id
), counted AS (  -- instances created per schedule, counted once
    SELECT m.name, count(*) AS n FROM created AS c JOIN made AS m USING (instance_id)
     GROUP BY m.name
), advanced AS (
    UPDATE {schema}.schedule AS s
       SET next_tick = r.next_tick,
           last_tick = coalesce(r.last_tick, s.last_tick),
           last_instance = coalesce(r.last_instance, s.last_instance),
           ticks = s.ticks + coalesce(k.n, 0), skipped = s.skipped + r.skipped,
           last_error = coalesce(r.error, s.last_error), updated_at = statement_timestamp()
      FROM unnest(%(names)s::text[], %(next_ticks)s::timestamptz[],
                  %(last_ticks)s::timestamptz[], %(last_instances)s::text[],
                  %(skipped)s::int8[], %(errors)s::text[])
           AS r(name, next_tick, last_tick, last_instance, skipped, error)
           LEFT JOIN counted AS k ON k.name = r.name
     WHERE s.saga = %(saga)s AND s.name = r.name
    RETURNING s.name)
SELECT (SELECT coalesce(array_agg(instance_id), '{{}}') FROM created),
       (SELECT count(*) FROM advanced),
       CASE WHEN EXISTS (SELECT 1 FROM created) THEN pg_notify(%(channel)s, %(saga)s) END;

-- name: next_schedule_due
-- Seconds until the earliest of our schedules is due (<= 0: now); NULL if none is.
SELECT extract(epoch FROM min(coalesce(s.next_tick, '-infinity')) - statement_timestamp())::float8
  FROM {schema}.schedule AS s
  JOIN unnest(%(names)s::text[], %(digests)s::text[]) AS d(name, digest)
    ON s.name = d.name AND md5(s.definition) = d.digest
 WHERE s.saga = %(saga)s AND NOT s.paused AND s.retired_at IS NULL;

-- name: pause_schedule
UPDATE {schema}.schedule SET paused = true, updated_at = statement_timestamp()
 WHERE saga = %(saga)s AND name = %(name)s
RETURNING name;

-- name: resume_schedule
-- The ticks that fell while paused are not made: the next one is computed from now.
UPDATE {schema}.schedule
   SET paused = false, next_tick = CASE WHEN paused THEN NULL ELSE next_tick END,
       updated_at = statement_timestamp()
 WHERE saga = %(saga)s AND name = %(name)s
RETURNING name;

-- name: list_schedules
-- Every schedule, with its last instance's status and row id (the dashboard links to
-- it) and how overdue its next tick is. The last instance is a look-up by the whole
-- unique key for each row (LATERAL: a nested loop over the index, never a join that
-- walks the saga's instances).
SELECT s.saga, s.name, s.step, s.expression, s.tz, s.next_tick, s.last_tick,
       s.last_instance, li.status AS last_status, li.id AS last_id,
       s.paused, s.retired_at, s.ticks, s.skipped, s.last_error, s.max_lateness,
       extract(epoch FROM statement_timestamp() - s.next_tick)::float8 AS overdue
  FROM {schema}.schedule AS s
  LEFT JOIN LATERAL (SELECT i.id, i.status FROM {schema}.instance AS i
                      WHERE i.name = s.saga AND i.instance_id = s.last_instance) AS li
    ON true
 WHERE %(saga)s::text IS NULL OR s.saga = %(saga)s
 ORDER BY s.saga, s.name;

-- name: find_schedules
SELECT saga, name FROM {schema}.schedule
 WHERE name = %(name)s AND (%(saga)s::text IS NULL OR saga = %(saga)s)
 ORDER BY saga;

-- name: overdue_schedules
-- Active schedules whose next tick is later than their maximum lateness: no ticker
-- serves them (no worker runs the code that declares them, or none has run lately).
SELECT saga, name, next_tick,
       extract(epoch FROM statement_timestamp() - next_tick)::float8 AS overdue
  FROM {schema}.schedule
 WHERE NOT paused AND retired_at IS NULL
   AND next_tick < statement_timestamp() - make_interval(secs => max_lateness)
 ORDER BY saga, name;
