-- Trace context for saga.telemetry: the W3C `traceparent` of the span that started an
-- instance (start() or start_many()) and of the span of its last call(), and how many
-- times the instance has been claimed. A worker makes each step's span a child of the
-- start's span for the first claims, then a root of its own with a link to it, so that a
-- saga that loops forever does not make an unbounded trace. NULL when nothing traced it:
-- the columns cost nothing then (a NULL takes no room in the row).
ALTER TABLE {schema}.instance
    ADD COLUMN trace_parent text,
    ADD COLUMN trace_call text,
    ADD COLUMN claims integer NOT NULL DEFAULT 0;
