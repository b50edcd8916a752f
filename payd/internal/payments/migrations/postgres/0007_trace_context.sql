-- traceparent: the W3C trace context of the request that accepted the
-- payment or refund, when payd traces (OpenTelemetry), else NULL. The
-- worker that claims the row later, in any process, continues that trace
-- from it.
ALTER TABLE payments ADD COLUMN traceparent text;
ALTER TABLE refunds ADD COLUMN traceparent text;
