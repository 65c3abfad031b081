-- Flow control enforced when calls are claimed (docs/flow-control.md): concurrency limits, throttles, and
-- the timers of start and finish timeouts. A run's settings are computed from its event when it is created
-- and travel on its work rows; rows of functions without flow control leave every column NULL, and the
-- claim of such a row does what it did before.

-- The concurrency keys of the run ("fn/<function>/<value>", "env/<namespace>/<value>", "account/<value>")
-- and the limit of each: at most that many of the rows naming a key hold a lease at once.
ALTER TABLE work ADD COLUMN concurrency_keys text[];
ALTER TABLE work ADD COLUMN concurrency_limits integer[];
-- The throttle of the run's first call (cleared once it is claimed): the key, the interval between starts
-- (period / limit) and how far ahead of that pace starts may run (the burst).
ALTER TABLE work ADD COLUMN throttle_key text;
ALTER TABLE work ADD COLUMN throttle_interval interval;
ALTER TABLE work ADD COLUMN throttle_tolerance interval;
-- timeouts.finish of the run, on its first call: the claim that starts the run sets the timer.
ALTER TABLE work ADD COLUMN finish_timeout interval;
-- Why a due call is not claimed: 'concurrency' (every slot of waiting_key is taken; available_at is
-- 'infinity' until a slot frees, queued_at keeps its place in line) or 'throttled' (available_at is the
-- start the throttle allows).
ALTER TABLE work ADD COLUMN waiting text CHECK (waiting IN ('concurrency', 'throttled'));
ALTER TABLE work ADD COLUMN waiting_key text;
ALTER TABLE work ADD COLUMN queued_at timestamptz;

CREATE INDEX work_waiting_for_slot ON work (waiting_key, queued_at, id) WHERE waiting = 'concurrency';

-- One row per concurrency or throttle key ever used: the leases held under it (kept by the trigger below)
-- and the throttle's theoretical arrival time (GCRA). Claims lock the rows of the keys they need, in key
-- order, so that two replicas never hand out the same slot.
CREATE TABLE flow_keys (
    key        text PRIMARY KEY,
    label      text,                          -- the key's value as the API shows it (null: no key)
    in_flight  integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
    tat        timestamptz
);

-- A lease taken on a row with concurrency keys holds a slot of each; a lease that ends (released, or its
-- row deleted: the run moved on, slept, finished or was cancelled) frees them, and the first call waiting
-- for each freed slot falls due at once, its place in line kept, with a NOTIFY: no replica polls for it.
CREATE FUNCTION work_concurrency_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    freed record;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.lease_token IS NULL THEN
        UPDATE flow_keys SET in_flight = in_flight + 1 WHERE key = ANY (NEW.concurrency_keys);
        RETURN NULL;
    END IF;
    FOR freed IN
        UPDATE flow_keys SET in_flight = greatest(in_flight - 1, 0)
        WHERE key = ANY (OLD.concurrency_keys) RETURNING key
    LOOP
        UPDATE work SET available_at = queued_at, waiting = NULL, waiting_key = NULL
        WHERE id = (SELECT id FROM work
                    WHERE waiting = 'concurrency' AND waiting_key = freed.key AND id <> OLD.id
                    ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED);
        IF FOUND THEN
            PERFORM pg_notify('stepline_work', '');
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER work_lease_slots AFTER UPDATE OF lease_token ON work FOR EACH ROW
    WHEN (OLD.concurrency_keys IS NOT NULL AND (OLD.lease_token IS NULL) <> (NEW.lease_token IS NULL))
    EXECUTE FUNCTION work_concurrency_slots();
CREATE TRIGGER work_deleted_slots AFTER DELETE ON work FOR EACH ROW
    WHEN (OLD.concurrency_keys IS NOT NULL AND OLD.lease_token IS NOT NULL)
    EXECUTE FUNCTION work_concurrency_slots();
