-- The queries of the admin CLI (saga.admin.queries), one per "-- name:" block, in the
-- format of queries.sql. They only read, except purge_batch. A NULL parameter means
-- "no such filter". Times are statement_timestamp(), the database clock, like the rest.

-- name: list_instances
-- The newest changes first; `older`/`newer` are seconds before now, on updated_at (when
-- the row last changed: a step ran, a retry was scheduled, the instance finished).
-- No index serves this order: the admin view of a big table is a scan and a top-N sort.
SELECT id, name, instance_id, step, status, attempts, run_after, updated_at, error
  FROM {schema}.instance
 WHERE (%(saga)s::text IS NULL OR name = %(saga)s)
   AND (%(statuses)s::smallint[] IS NULL OR status = ANY(%(statuses)s::smallint[]))
   AND (%(step)s::text IS NULL OR step = %(step)s)
   AND (%(older)s::float8 IS NULL
        OR updated_at < statement_timestamp() - make_interval(secs => %(older)s::float8))
   AND (%(newer)s::float8 IS NULL
        OR updated_at >= statement_timestamp() - make_interval(secs => %(newer)s::float8))
 ORDER BY updated_at DESC, id DESC
 LIMIT %(limit)s;

-- name: find_instance
-- Every column of the instances with this id, in the sagas named (all sagas when NULL).
-- Without a saga name, the unique index on (name, instance_id) is walked once per
-- distinct name (a "loose index scan") rather than scanning the table for instance_id.
WITH RECURSIVE names AS (
    SELECT min(name) AS name FROM {schema}.instance
     WHERE %(saga)s::text IS NULL OR name = %(saga)s
    UNION ALL
    SELECT (SELECT min(name) FROM {schema}.instance WHERE name > names.name)
      FROM names
     WHERE names.name IS NOT NULL AND %(saga)s::text IS NULL)
SELECT i.*
  FROM names JOIN {schema}.instance AS i
    ON i.name = names.name AND i.instance_id = %(instance)s
 ORDER BY i.name;

-- name: get_by_id
SELECT * FROM {schema}.instance WHERE id = %(id)s;

-- name: count_by_status
SELECT name, status, count(*) FROM {schema}.instance GROUP BY name, status ORDER BY name, status;

-- name: due_backlog
-- PENDING rows that are due, per saga, and the age of the oldest: how far behind the
-- workers are (the lag).
SELECT name, count(*),
       extract(epoch FROM statement_timestamp() - min(run_after))::float8
  FROM {schema}.instance
 WHERE status = 0 AND run_after <= statement_timestamp()
 GROUP BY name
 ORDER BY name;

-- name: list_runners
-- Every runner row, live or expired (an expired one is dead and waits to be reaped).
SELECT id, hostname, pid, serves, started_at, heartbeat_at, expires_at,
       extract(epoch FROM statement_timestamp() - heartbeat_at)::float8 AS heartbeat_age,
       expires_at >= statement_timestamp() AS live
  FROM {schema}.runner
 ORDER BY hostname, pid, id;

-- name: orphaned_due
-- Due PENDING rows whose (saga, step) no live runner serves: nobody will run them until
-- a runner that knows the step starts. What a deploy that removed or renamed a step
-- leaves behind (or, with cron drains, everything due between two drains).
-- `serves` is {saga name: [step names]}; `?` is jsonb's "the array holds this string".
SELECT i.name, i.step, count(*),
       extract(epoch FROM statement_timestamp() - min(i.run_after))::float8
  FROM {schema}.instance AS i
 WHERE i.status = 0 AND i.run_after <= statement_timestamp()
   AND NOT EXISTS (SELECT 1 FROM {schema}.runner AS r
                    WHERE r.expires_at >= statement_timestamp()
                      AND coalesce(r.serves -> i.name, '[]'::jsonb) ? i.step)
 GROUP BY i.name, i.step
 ORDER BY i.name, i.step;

-- name: purge_cutoff
-- Fixed once per purge, so that every batch (and a dry run) agrees on what is old.
SELECT statement_timestamp() - make_interval(secs => %(older)s::float8);

-- name: purge_count
SELECT count(*) FROM {schema}.instance
 WHERE status = ANY(%(statuses)s::smallint[]) AND updated_at < %(cutoff)s
   AND (%(saga)s::text IS NULL OR name = %(saga)s);

-- name: purge_batch
-- Delete up to `batch` finished instances older than the cutoff, past row id `after`, in
-- one short statement; return how many and the last id, where the next batch starts.
-- Walking the primary key keeps each batch from rescanning what earlier ones looked at
-- (or deleted, dead until vacuumed). SKIP LOCKED passes rows another transaction holds
-- (a retry() in flight) instead of waiting; a row whose status changed no longer matches.
WITH deleted AS (
    DELETE FROM {schema}.instance
     WHERE id IN (SELECT id FROM {schema}.instance
                   WHERE id > %(after)s
                     AND status = ANY(%(statuses)s::smallint[]) AND updated_at < %(cutoff)s
                     AND (%(saga)s::text IS NULL OR name = %(saga)s)
                   ORDER BY id
                   LIMIT %(batch)s
                     FOR UPDATE SKIP LOCKED)
    RETURNING id)
SELECT count(*), max(id) FROM deleted;

-- name: error_instances
-- The next `batch` ERROR instances past row id `after` that match, for a bulk retry (each
-- then replayed by retry_instance, the API's own statement). Walks the primary key.
SELECT id, name, instance_id
  FROM {schema}.instance
 WHERE status = 3 AND id > %(after)s
   AND (%(saga)s::text IS NULL OR name = %(saga)s)
   AND (%(step)s::text IS NULL OR step = %(step)s)
   AND (%(older)s::float8 IS NULL
        OR updated_at < statement_timestamp() - make_interval(secs => %(older)s::float8))
   AND (%(newer)s::float8 IS NULL
        OR updated_at >= statement_timestamp() - make_interval(secs => %(newer)s::float8))
 ORDER BY id
 LIMIT %(batch)s;

-- name: limit_usage
-- Per limit that a live runner enforces (the newest runner's declaration of each): its
-- slots in use (RUNNING rows claimed under limits, of its steps; for a rate, the starts
-- in its current window), and the due rows of its steps waiting.
WITH declared AS (
    SELECT DISTINCT ON (d.key, l ->> 'id') d.key AS name, l
      FROM {schema}.runner AS r
     CROSS JOIN LATERAL jsonb_each(r.limits) AS d
     CROSS JOIN LATERAL jsonb_array_elements(d.value) AS l
     WHERE r.expires_at >= statement_timestamp()
     ORDER BY d.key, l ->> 'id', r.started_at DESC)
SELECT name, l ->> 'kind', (l ->> 'n')::int, (l ->> 'per')::float8,
       ARRAY(SELECT jsonb_array_elements_text(l -> 'steps')),
       CASE WHEN l ->> 'kind' = 'rate' THEN
            (SELECT count(*) FROM {schema}.limit_start AS s
              WHERE s.name = declared.name AND s.lim = l ->> 'id'
                AND s.at > statement_timestamp() - make_interval(secs => (l ->> 'per')::float8))
       ELSE (SELECT count(*) FROM {schema}.instance AS i
              WHERE i.status = 1 AND i.limited AND i.name = declared.name
                AND i.step IN (SELECT jsonb_array_elements_text(l -> 'steps'))) END,
       (SELECT count(*) FROM {schema}.instance AS i
         WHERE i.status = 0 AND i.name = declared.name
           AND i.run_after <= statement_timestamp()
           AND i.step IN (SELECT jsonb_array_elements_text(l -> 'steps')))
  FROM declared
 ORDER BY name, l ->> 'id';
