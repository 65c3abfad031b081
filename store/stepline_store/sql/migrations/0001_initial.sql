-- Stepline's store: functions (the routing table), events, runs, their steps, and the work queue.

CREATE TABLE functions (
    id          text PRIMARY KEY,                 -- "<app>-<function>", as the protocol names it
    app_id      text NOT NULL,
    name        text NOT NULL,
    url         text NOT NULL,                    -- the app's serve URL, without query
    triggers    jsonb NOT NULL,                   -- [{"event": ..., "if": ...} | {"cron": ..., "timezone": ...}]
    retries     integer NOT NULL CHECK (retries BETWEEN 0 AND 20),
    paused      boolean NOT NULL DEFAULT false,
    source      text NOT NULL,                    -- "sdk", "manifest:<file>" or "kubernetes:<ns>/<name>"
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX functions_app ON functions (app_id);

CREATE TABLE events (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    data         jsonb NOT NULL,
    "user"       jsonb,
    ts           bigint NOT NULL,                 -- milliseconds since the epoch
    received_at  timestamptz NOT NULL
);
CREATE INDEX events_received ON events (received_at DESC, id DESC);

CREATE TABLE runs (
    id            uuid PRIMARY KEY,
    function_id   text NOT NULL,
    function_name text NOT NULL,
    url           text NOT NULL,                  -- kept with the run: a run started finishes after unpublish
    max_attempts  integer NOT NULL,
    event_id      text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    status        text NOT NULL CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed', 'Cancelled')),
    output        jsonb,
    error         jsonb,
    replay_of     uuid,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz
);
CREATE INDEX runs_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_function_created ON runs (function_id, created_at DESC, id DESC);
CREATE INDEX runs_status_created ON runs (status, created_at DESC, id DESC);
CREATE INDEX runs_event ON runs (event_id);

-- One row per step of a run; memo is written once and never again (the replay key is run + hash).
CREATE TABLE steps (
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    hash        text NOT NULL,
    name        text NOT NULL,
    op          text NOT NULL,
    status      text NOT NULL CHECK (status IN ('Planned', 'Retrying', 'Completed', 'Failed')),
    attempts    integer NOT NULL DEFAULT 0,
    memo        jsonb,                            -- {"data": ...} or {"error": {...}}, what the function sees
    error       jsonb,                            -- the last attempt's error
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    PRIMARY KEY (run_id, hash)
);

-- Due calls to a function. A claim moves available_at to the lease's end, so an expired lease simply
-- makes the row due again; lease_token tells the holder whether it still owns the row.
CREATE TABLE work (
    id            bigserial PRIMARY KEY,
    run_id        uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id       text NOT NULL,                  -- the stepId of the call: "step" or a step hash
    attempt       integer NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL,
    lease_owner   text,
    lease_token   uuid,
    UNIQUE (run_id, step_id)
);
CREATE INDEX work_due ON work (available_at);
