-- Flow control and retry policy of a function, as published (docs/flow-control.md).

-- The FlowControl model of stepline.flow dumped by alias (concurrency, throttle, rateLimit, debounce,
-- batchEvents, priority, idempotency, singleton, timeouts; only the settings given); NULL when none.
ALTER TABLE functions ADD COLUMN flow jsonb;
-- The RetryPolicy model of stepline.flow dumped by alias (backoff, initialDelay, maxDelay, jitterPercent,
-- timeout); NULL: the gateway's default backoff and no per-call timeout.
ALTER TABLE functions ADD COLUMN retry_policy jsonb;
