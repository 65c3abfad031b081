-- Flow control decided when events are ingested (docs/flow-control.md): rate limits, idempotency keys,
-- singletons, debounces and event batches, and the events that started no run because of them. Each state
-- table has one row per function and key; ingest reads and writes it in the transaction that stores the
-- events, so any number of replicas agree.

-- rateLimit, as GCRA: tat is the theoretical arrival time of the next event; an event is let through while
-- tat <= now + period - period/limit. step_s and period_s: period/limit and the period, in seconds, as last
-- used; requested and admitted: how many events the last ingest of the key brought and how many it let through.
CREATE TABLE rate_limits (
    function_id  text NOT NULL,
    key          text NOT NULL,
    tat          timestamptz NOT NULL,
    step_s       float8 NOT NULL,
    period_s     float8 NOT NULL,
    requested    integer NOT NULL,
    admitted     integer NOT NULL,
    PRIMARY KEY (function_id, key)
);
CREATE INDEX rate_limits_tat ON rate_limits (tat);

-- idempotency: the key's first event, and when the key may start a run again (24 h later).
CREATE TABLE idempotency_keys (
    function_id  text NOT NULL,
    key          text NOT NULL,
    event_id     text NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- singleton: the key's latest run; another may start once that one has ended.
CREATE TABLE singletons (
    function_id  text NOT NULL,
    key          text NOT NULL,
    run_id       uuid NOT NULL,
    PRIMARY KEY (function_id, key)
);

-- debounce: the key's pending run (its first call due after the period) and when its first event came.
CREATE TABLE debounces (
    function_id  text NOT NULL,
    key          text NOT NULL,
    run_id       uuid NOT NULL,
    first_at     timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);
CREATE INDEX debounces_run ON debounces (run_id);

-- batchEvents: the key's open batch (its run, how many events it holds, how many it may).
CREATE TABLE batches (
    function_id  text NOT NULL,
    key          text NOT NULL,
    run_id       uuid NOT NULL,
    size         integer NOT NULL,
    max_size     integer NOT NULL,
    PRIMARY KEY (function_id, key)
);
CREATE INDEX batches_run ON batches (run_id);

-- The events of a batch run, in order (position 0 is the run's own event_id).
CREATE TABLE batch_events (
    run_id    uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position  integer NOT NULL,
    event_id  text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX batch_events_event ON batch_events (event_id);

-- A run that receives a batch (NULL for every other run, so the claim reads the batch only for these).
ALTER TABLE runs ADD COLUMN batched boolean;

-- Events that matched a function's trigger but started no run of it, and why.
CREATE TABLE skipped_events (
    event_id     text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    function_id  text NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('rate_limited', 'idempotency', 'singleton')),
    skipped_at   timestamptz NOT NULL,
    PRIMARY KEY (event_id, function_id)
);
