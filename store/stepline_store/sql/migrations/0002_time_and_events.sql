-- Time and events inside functions: sleeps, waits for events, invoked child runs, cancel rules, cron.

ALTER TABLE functions ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE functions ADD COLUMN cancel_on jsonb NOT NULL DEFAULT '[]';   -- [{"event", "if"?, "timeout"?}]

ALTER TABLE runs ADD COLUMN parent_run_id uuid;                           -- set on a run started by invoke
ALTER TABLE runs ADD COLUMN parent_step text;                             -- the invoking step's hash

ALTER TABLE steps DROP CONSTRAINT steps_status_check;
ALTER TABLE steps ADD CONSTRAINT steps_status_check
    CHECK (status IN ('Planned', 'Retrying', 'Completed', 'Failed', 'Sleeping', 'Waiting', 'Invoking'));

-- A call parked on a sleep, a wait or an invoke: when it falls due it first records ``resolution`` as the
-- memo of step ``resolves`` (null at a sleep's end or a wait's timeout; the event or the child's result
-- when those arrive first, which also make the call due at once).
ALTER TABLE work ADD COLUMN resolves text;
ALTER TABLE work ADD COLUMN resolves_op text;
ALTER TABLE work ADD COLUMN resolves_name text;
ALTER TABLE work ADD COLUMN resolution jsonb;

-- Open waits for an event: matched against every new event of that name.
CREATE TABLE waits (
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    hash        text NOT NULL,
    event_name  text NOT NULL,
    expression  text,                              -- CEL over ``event`` (the run's) and ``async`` (the new one)
    PRIMARY KEY (run_id, hash)
);
CREATE INDEX waits_event ON waits (event_name);
