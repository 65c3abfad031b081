-- History partitioned by day: events, runs, steps and step_attempts become range-partitioned tables with one
-- partition per UTC day, so that retention drops whole days (no per-row cost) and the hot partitions stay
-- small. The work queue and the open waits stay small plain tables.
--
-- Keys: Postgres wants the partition key in every unique constraint. Run ids are UUIDv7 (their first 48 bits
-- are the creation time in milliseconds), and runs are partitioned on the id itself: a day's partition holds
-- the ids from the first UUIDv7 of that day to the first of the next. Steps and step attempts are partitioned
-- on their run id with the same bounds, so every primary key and every foreign key to a run stays a single
-- column, and a run's steps always sit in its day. Events keep the id their sender gave (any text), so they
-- are partitioned on received_at; each day's partition has its own unique index on id, and ingest refuses an
-- id that any kept partition holds (see the ingest query). Nothing has a foreign key to an event any more
-- (runs, batch_events, skipped_events): retention removes what refers to a day's events with the day.
--
-- The migration keeps the data: existing runs get UUIDv7 ids made from their created_at (every reference to
-- a run, in Stepline's tables and in any table with a foreign key to runs, follows), and everything is copied
-- into the day partitions. Whatever columns, checks and indexes the four tables have by now are kept as they
-- are (copied from the catalog, not spelled out here).

-- The smallest UUIDv7 of the millisecond of ``at``: the bound of a day's partition of runs (and steps).
CREATE FUNCTION stepline_uuid7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid
$$;

-- A UUIDv7 of the millisecond of ``at`` (74 random bits from gen_random_uuid()), for ids made in SQL.
CREATE FUNCTION stepline_uuid7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL RESTRICTED AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
            || substr(r, 14, 3) || substr(r, 17, 16))::uuid
    FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS r) AS random
$$;

-- Names each day's indexes after the index of the whole table they belong to: runs_created_p20260101 on
-- runs_p20260101, so that plans read as the schema does.
CREATE FUNCTION stepline_name_history_indexes() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT child.relname AS index_name, parent.relname || '_' || substring(tbl.relname FROM 'p[0-9]{8}$') AS wanted
        FROM pg_inherits i
        JOIN pg_class child ON child.oid = i.inhrelid AND child.relkind = 'i'
        JOIN pg_class parent ON parent.oid = i.inhparent
        JOIN pg_index ix ON ix.indexrelid = child.oid
        JOIN pg_class tbl ON tbl.oid = ix.indrelid
        WHERE tbl.relname ~ '^(events|runs|steps|step_attempts)_p[0-9]{8}$'
          AND child.relname <> parent.relname || '_' || substring(tbl.relname FROM 'p[0-9]{8}$')
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', item.index_name, item.wanted);
    END LOOP;
END
$$;

-- Creates the day partitions of the four history tables from ``first_day`` to ``last_day`` (UTC days) that
-- do not exist yet; answers how many days were made. Serialised across processes by an advisory lock. A
-- lock on the tables not granted within ``lock_ms`` milliseconds fails the call (lock_not_available), to be
-- made again later: kept below deadlock_timeout, so that a live statement is never the one a deadlock stops.
CREATE FUNCTION stepline_create_history_partitions(first_day date, last_day date, lock_ms integer DEFAULT 0)
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
        made := made + 1;
    END LOOP;
    IF made > 0 THEN
        PERFORM stepline_name_history_indexes();
    END IF;
    RETURN made;
END
$$;

-- Drops the days whose end is at or before ``cutoff``, oldest first, except a day that still holds a run not
-- ended, or whose events a run not ended (a replay, a batch) still needs: such a day is kept whole until those
-- runs end.
-- A day whose tables are busy for more than lock_ms milliseconds is left for the next time (kept below
-- deadlock_timeout: a live statement is never the one a deadlock stops). Answers the days dropped.
CREATE FUNCTION stepline_drop_history_before(cutoff timestamptz, lock_ms integer) RETURNS date[]
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    suffix text;
    starts timestamptz;
    ends timestamptz;
    expired date[] := '{}';
    dropped date[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('stepline.history_partitions', 0));
    -- Which days may go, decided before any of them is detached: a detach locks the whole table until the
    -- transaction ends, and these reads must not run under that lock.
    FOR day IN SELECT to_date(substr(c.relname, 7), 'YYYYMMDD') AS d
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'runs'::regclass AND c.relname ~ '^runs_p[0-9]{8}$'
               ORDER BY d LOOP
        starts := day::timestamp AT TIME ZONE 'UTC';
        ends := (day + 1)::timestamp AT TIME ZONE 'UTC';
        EXIT WHEN ends > cutoff;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM runs
            WHERE id >= stepline_uuid7_floor(starts) AND id < stepline_uuid7_floor(ends)
              AND status IN ('Queued', 'Running'));
        -- The runs not ended (few, by their status index), each looking for its event, or for an event of
        -- its batch, in the day.
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM runs r
            WHERE r.status IN ('Queued', 'Running')
              AND EXISTS (SELECT 1 FROM events e
                          WHERE e.id = r.event_id AND e.received_at >= starts AND e.received_at < ends));
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM runs r JOIN batch_events b ON b.run_id = r.id
            WHERE r.status IN ('Queued', 'Running')
              AND EXISTS (SELECT 1 FROM events e
                          WHERE e.id = b.event_id AND e.received_at >= starts AND e.received_at < ends));
        expired := expired || day;
    END LOOP;
    PERFORM set_config('lock_timeout', lock_ms || 'ms', true);
    FOREACH day IN ARRAY expired LOOP
        suffix := to_char(day, 'YYYYMMDD');
        starts := day::timestamp AT TIME ZONE 'UTC';
        ends := (day + 1)::timestamp AT TIME ZONE 'UTC';
        BEGIN
            -- What flow control keeps about the day's runs and events goes with them (the batches of its
            -- runs, the events of later batches that ended, the events it skipped).
            DELETE FROM batch_events
            WHERE run_id >= stepline_uuid7_floor(starts) AND run_id < stepline_uuid7_floor(ends);
            EXECUTE format('DELETE FROM batch_events WHERE event_id IN (SELECT id FROM %I)', 'events_p' || suffix);
            EXECUTE format('DELETE FROM skipped_events WHERE event_id IN (SELECT id FROM %I)', 'events_p' || suffix);
            EXECUTE format('DROP TABLE %I', 'step_attempts_p' || suffix);
            EXECUTE format('DROP TABLE %I', 'steps_p' || suffix);
            -- Detached first: the queue's foreign keys to runs are checked against the day's rows (none).
            EXECUTE format('ALTER TABLE runs DETACH PARTITION %I', 'runs_p' || suffix);
            EXECUTE format('DROP TABLE %I', 'runs_p' || suffix);
            EXECUTE format('DROP TABLE %I', 'events_p' || suffix);
            dropped := dropped || day;
        EXCEPTION WHEN lock_not_available OR foreign_key_violation THEN
            RAISE NOTICE 'history of % kept for now: %', day, SQLERRM;
        END;
    END LOOP;
    RETURN dropped;
END
$$;

DO $$
DECLARE
    history constant text[] := ARRAY['events', 'runs', 'steps', 'step_attempts'];
    item record;
    first_day date;
    today constant date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    -- One process copies: parallel workers cannot write the temporary map of run ids.
    PERFORM set_config('max_parallel_workers_per_gather', '0', true);
    -- What the four tables have and what refers to them, as SQL to run again on the new tables.
    CREATE TEMP TABLE history_foreign_keys ON COMMIT DROP AS
        SELECT c.conrelid::regclass::text AS tbl, c.conname, pg_get_constraintdef(c.oid) AS def,
               c.confrelid::regclass::text AS target,
               (SELECT a.attname FROM pg_attribute a
                WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]) AS col,
               cardinality(c.conkey) AS width
        FROM pg_constraint c
        WHERE c.contype = 'f'
          AND (c.confrelid::regclass::text = ANY (history) OR c.conrelid::regclass::text = ANY (history));
    CREATE TEMP TABLE history_keys ON COMMIT DROP AS
        SELECT c.conrelid::regclass::text AS tbl, c.conname, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u') AND c.conrelid::regclass::text = ANY (history);
    CREATE TEMP TABLE history_indexes ON COMMIT DROP AS
        SELECT i.indrelid::regclass::text AS tbl, pg_get_indexdef(i.indexrelid) AS def, i.indisunique AS is_unique
        FROM pg_index i
        WHERE i.indrelid::regclass::text = ANY (history)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid);

    FOR item IN SELECT * FROM history_foreign_keys LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', item.tbl, item.conname);
    END LOOP;

    FOR item IN SELECT unnest(history) AS tbl LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', item.tbl, item.tbl || '_unpartitioned');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
                       'INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
                       item.tbl, item.tbl || '_unpartitioned',
                       CASE item.tbl WHEN 'events' THEN 'received_at' WHEN 'runs' THEN 'id' ELSE 'run_id' END);
    END LOOP;

    SELECT least(today - 7,
                 (SELECT min((received_at AT TIME ZONE 'UTC')::date) FROM events_unpartitioned),
                 (SELECT min((created_at AT TIME ZONE 'UTC')::date) FROM runs_unpartitioned))
    INTO first_day;
    PERFORM stepline_create_history_partitions(first_day, today + 3);

    -- Every run gets a UUIDv7 of its creation time; whatever refers to a run follows.
    CREATE TEMP TABLE run_ids ON COMMIT DROP AS
        SELECT id AS old, stepline_uuid7(created_at) AS new FROM runs_unpartitioned;
    ALTER TABLE run_ids ADD PRIMARY KEY (old);
    UPDATE runs_unpartitioned r SET id = m.new FROM run_ids m WHERE r.id = m.old;
    UPDATE runs_unpartitioned r SET replay_of = m.new FROM run_ids m WHERE r.replay_of = m.old;
    UPDATE runs_unpartitioned r SET parent_run_id = m.new FROM run_ids m WHERE r.parent_run_id = m.old;
    UPDATE steps_unpartitioned s SET run_id = m.new FROM run_ids m WHERE s.run_id = m.old;
    UPDATE step_attempts_unpartitioned s SET run_id = m.new FROM run_ids m WHERE s.run_id = m.old;
    FOR item IN SELECT DISTINCT tbl, col FROM history_foreign_keys
                WHERE target = 'runs' AND width = 1 AND NOT (tbl = ANY (history)) LOOP
        EXECUTE format('UPDATE %s t SET %I = m.new FROM run_ids m WHERE t.%I = m.old', item.tbl, item.col, item.col);
    END LOOP;

    FOR item IN SELECT unnest(history) AS tbl LOOP
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', item.tbl, item.tbl || '_unpartitioned');
        EXECUTE format('DROP TABLE %I', item.tbl || '_unpartitioned');
    END LOOP;

    -- Keys and indexes as they were. Events cannot have a unique key on id alone across partitions: each day's
    -- partition has one instead (stepline_create_history_partitions).
    FOR item IN SELECT * FROM history_keys WHERE tbl <> 'events' LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', item.tbl, item.conname, item.def);
    END LOOP;
    FOR item IN SELECT * FROM history_indexes WHERE NOT (tbl = 'events' AND is_unique) LOOP
        EXECUTE item.def;
    END LOOP;
    FOR item IN SELECT * FROM history_foreign_keys WHERE target <> 'events' LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', item.tbl, item.conname, item.def);
    END LOOP;
    PERFORM stepline_name_history_indexes();
END
$$;

ANALYZE events, runs, steps, step_attempts;
