"""Traces and metrics for pgsaga, each behind an optional extra.

- `saga.telemetry.otel` (`pgsaga[otel]`): OpenTelemetry spans for `start()`,
  `start_many()`, `call()` and every step, and the step metrics through the
  OpenTelemetry metrics API.
- `saga.telemetry.metrics` (`pgsaga[prometheus]`): the same metrics for Prometheus, and
  the `/metrics` endpoint of `python -m saga.worker --metrics-port N`.
- `saga.telemetry.context` and `saga.telemetry.gauges` need neither: the trace context
  stored with an instance, and the gauges read from the database at scrape time.

Importing this package imports neither library.
"""
