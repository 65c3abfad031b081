-- A step's (and a failed attempt's) foreign key to its run is kept day by day: steps_p20260101 refers to
-- runs_p20260101, not to the partitioned runs table. A run's steps always sit in its day (both are partitioned
-- on the run id with the same bounds, migration 0014), so this is the same rule. It is much cheaper to check:
-- Postgres checks a key against a partitioned table through a plan over all its partitions, which cost about
-- 0.13 ms per inserted step, against under 0.02 ms against one plain table (docs/performance.md, "Foreign
-- keys by day"). Retention drops a day's steps before its runs, so their keys go first.
--
-- The migration holds the history tables while it checks the rows already there: about a second for 300,000
-- runs and their steps (docs/operations.md).

ALTER TABLE steps DROP CONSTRAINT steps_run_id_fkey;
ALTER TABLE step_attempts DROP CONSTRAINT step_attempts_run_id_fkey;

-- The key of one day's table (steps or step_attempts) to that day's runs, added if missing.
CREATE FUNCTION stepline_add_day_foreign_key(child text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    runs_day text := 'runs_' || substring(child FROM 'p[0-9]{8}$');
    name text := child || '_run_id_fkey';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = name AND conrelid = child::regclass) THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (run_id) REFERENCES %I (id) ON DELETE CASCADE',
                   child, name, runs_day);
END
$$;

DO $$
DECLARE
    child text;
BEGIN
    FOR child IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('steps'::regclass, 'step_attempts'::regclass)
          AND c.relname ~ '^(steps|step_attempts)_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        PERFORM stepline_add_day_foreign_key(child);
    END LOOP;
END
$$;

-- As in 0014, and each new day's steps and step attempts get their key to the day's runs.
CREATE OR REPLACE FUNCTION stepline_create_history_partitions(first_day date, last_day date, lock_ms integer DEFAULT 0)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    made integer := 0;
    suffix text;
    starts timestamptz;
    ends timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('stepline.history_partitions', 0));
    PERFORM set_config('lock_timeout', lock_ms || 'ms', true);
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        suffix := to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('runs_p' || suffix) IS NOT NULL;
        starts := day::timestamp AT TIME ZONE 'UTC';
        ends := (day + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       'events_p' || suffix, starts, ends);
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (id)', 'events_p' || suffix || '_id', 'events_p' || suffix);
        EXECUTE format('CREATE TABLE %I PARTITION OF runs FOR VALUES FROM (%L) TO (%L)',
                       'runs_p' || suffix, stepline_uuid7_floor(starts), stepline_uuid7_floor(ends));
        EXECUTE format('CREATE TABLE %I PARTITION OF steps FOR VALUES FROM (%L) TO (%L)',
                       'steps_p' || suffix, stepline_uuid7_floor(starts), stepline_uuid7_floor(ends));
        EXECUTE format('CREATE TABLE %I PARTITION OF step_attempts FOR VALUES FROM (%L) TO (%L)',
                       'step_attempts_p' || suffix, stepline_uuid7_floor(starts), stepline_uuid7_floor(ends));
        PERFORM stepline_add_day_foreign_key('steps_p' || suffix);
        PERFORM stepline_add_day_foreign_key('step_attempts_p' || suffix);
        made := made + 1;
    END LOOP;
    IF made > 0 THEN
        PERFORM stepline_name_history_indexes();
    END IF;
    RETURN made;
END
$$;
