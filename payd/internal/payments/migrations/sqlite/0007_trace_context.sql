-- The accepting request's W3C trace context; see PostgreSQL's 0005.
ALTER TABLE payments ADD COLUMN traceparent text;
ALTER TABLE refunds ADD COLUMN traceparent text;
