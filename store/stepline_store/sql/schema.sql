-- The schema that Stepline's migrations build, written by scripts/generate-schema (never by hand):
-- tests/test_store/test_schema_snapshot.py checks that migrating an empty database rebuilds it.
--
-- PostgreSQL database dump
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: stepline_add_day_foreign_key(text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_add_day_foreign_key(child text) RETURNS void
    LANGUAGE plpgsql
    AS $_$
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
$_$;

--
-- Name: stepline_create_history_partitions(date, date, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_create_history_partitions(first_day date, last_day date, lock_ms integer DEFAULT 0) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: stepline_drop_history_before(timestamp with time zone, integer); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_drop_history_before(cutoff timestamp with time zone, lock_ms integer) RETURNS date[]
    LANGUAGE plpgsql
    AS $_$
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
$_$;

--
-- Name: stepline_keep_recorded_step(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_keep_recorded_step() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN NULL;
END
$$;

--
-- Name: stepline_name_history_indexes(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_name_history_indexes() RETURNS void
    LANGUAGE plpgsql
    AS $_$
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
$_$;

--
-- Name: stepline_uuid7(timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_uuid7(at timestamp with time zone) RETURNS uuid
    LANGUAGE sql PARALLEL RESTRICTED
    AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
            || substr(r, 14, 3) || substr(r, 17, 16))::uuid
    FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS r) AS random
$$;

--
-- Name: stepline_uuid7_floor(timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.stepline_uuid7_floor(at timestamp with time zone) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid
$$;

--
-- Name: work_concurrency_slots(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.work_concurrency_slots() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: api_tokens; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.api_tokens (
    sha256 text NOT NULL,
    namespace text,
    role text NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT api_tokens_role_check CHECK ((role = ANY (ARRAY['viewer'::text, 'operator'::text])))
);

--
-- Name: batch_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.batch_events (
    run_id uuid NOT NULL,
    "position" integer NOT NULL,
    event_id text NOT NULL
);

--
-- Name: batches; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.batches (
    function_id text NOT NULL,
    key text NOT NULL,
    run_id uuid NOT NULL,
    size integer NOT NULL,
    max_size integer NOT NULL
);

--
-- Name: dashboard_sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.dashboard_sessions (
    id_sha256 text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    role text DEFAULT 'operator'::text NOT NULL,
    namespace text,
    token_sha256 text,
    CONSTRAINT dashboard_sessions_role_check CHECK ((role = ANY (ARRAY['viewer'::text, 'operator'::text])))
);

--
-- Name: debounces; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.debounces (
    function_id text NOT NULL,
    key text NOT NULL,
    run_id uuid NOT NULL,
    first_at timestamp with time zone NOT NULL
);

--
-- Name: event_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.event_keys (
    sha256 text NOT NULL,
    namespace text NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.events (
    id text NOT NULL,
    name text NOT NULL,
    data jsonb NOT NULL,
    "user" jsonb,
    ts bigint NOT NULL,
    received_at timestamp with time zone NOT NULL,
    v text,
    namespaces text[]
)
PARTITION BY RANGE (received_at);

--
-- Name: flow_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.flow_keys (
    key text NOT NULL,
    label text,
    in_flight integer DEFAULT 0 NOT NULL,
    tat timestamp with time zone,
    CONSTRAINT flow_keys_in_flight_check CHECK ((in_flight >= 0))
);

--
-- Name: functions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.functions (
    id text NOT NULL,
    app_id text NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    triggers jsonb NOT NULL,
    retries integer NOT NULL,
    paused boolean DEFAULT false NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    cancel_on jsonb DEFAULT '[]'::jsonb NOT NULL,
    checkpoint jsonb,
    flow jsonb,
    retry_policy jsonb,
    namespace text GENERATED ALWAYS AS (
CASE
    WHEN (strpos(id, '/'::text) > 0) THEN split_part(id, '/'::text, 1)
    ELSE 'default'::text
END) STORED NOT NULL,
    CONSTRAINT functions_retries_check CHECK (((retries >= 0) AND (retries <= 20)))
);

--
-- Name: idempotency_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.idempotency_keys (
    function_id text NOT NULL,
    key text NOT NULL,
    event_id text NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

--
-- Name: rate_limits; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rate_limits (
    function_id text NOT NULL,
    key text NOT NULL,
    tat timestamp with time zone NOT NULL,
    step_s double precision NOT NULL,
    period_s double precision NOT NULL,
    requested integer NOT NULL,
    admitted integer NOT NULL
);

--
-- Name: runs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.runs (
    id uuid NOT NULL,
    function_id text NOT NULL,
    function_name text NOT NULL,
    url text NOT NULL,
    max_attempts integer NOT NULL,
    event_id text NOT NULL,
    status text NOT NULL,
    output jsonb,
    error jsonb,
    replay_of uuid,
    created_at timestamp with time zone NOT NULL,
    started_at timestamp with time zone,
    ended_at timestamp with time zone,
    parent_run_id uuid,
    parent_step text,
    batched boolean,
    CONSTRAINT runs_status_check CHECK ((status = ANY (ARRAY['Queued'::text, 'Running'::text, 'Completed'::text, 'Failed'::text, 'Cancelled'::text])))
)
PARTITION BY RANGE (id);

--
-- Name: signing_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.signing_keys (
    namespace text NOT NULL,
    source text NOT NULL,
    current text NOT NULL,
    previous text,
    fingerprint text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: singletons; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.singletons (
    function_id text NOT NULL,
    key text NOT NULL,
    run_id uuid NOT NULL
);

--
-- Name: skipped_events; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.skipped_events (
    event_id text NOT NULL,
    function_id text NOT NULL,
    reason text NOT NULL,
    skipped_at timestamp with time zone NOT NULL,
    CONSTRAINT skipped_events_reason_check CHECK ((reason = ANY (ARRAY['rate_limited'::text, 'idempotency'::text, 'singleton'::text])))
);

--
-- Name: step_attempts; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.step_attempts (
    run_id uuid NOT NULL,
    hash text NOT NULL,
    attempt integer NOT NULL,
    error jsonb NOT NULL,
    ended_at timestamp with time zone NOT NULL,
    started_at timestamp with time zone
)
PARTITION BY RANGE (run_id);

--
-- Name: stepline_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.stepline_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.steps (
    run_id uuid NOT NULL,
    hash text NOT NULL,
    name text NOT NULL,
    op text NOT NULL,
    status text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    memo jsonb,
    error jsonb,
    started_at timestamp with time zone NOT NULL,
    ended_at timestamp with time zone,
    checkpointed boolean DEFAULT false NOT NULL,
    attempt_started_at timestamp with time zone,
    CONSTRAINT steps_status_check CHECK ((status = ANY (ARRAY['Planned'::text, 'Retrying'::text, 'Completed'::text, 'Failed'::text, 'Sleeping'::text, 'Waiting'::text, 'Invoking'::text])))
)
PARTITION BY RANGE (run_id);

--
-- Name: waits; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.waits (
    run_id uuid NOT NULL,
    hash text NOT NULL,
    event_name text NOT NULL,
    expression text
);

--
-- Name: webhook_deliveries; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhook_deliveries (
    id bigint NOT NULL,
    namespace text NOT NULL,
    name text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    accepted boolean NOT NULL,
    status integer NOT NULL,
    reason text NOT NULL,
    event_ids text[] DEFAULT '{}'::text[] NOT NULL
);

--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.webhook_deliveries_id_seq OWNED BY public.webhook_deliveries.id;

--
-- Name: webhooks; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.webhooks (
    namespace text NOT NULL,
    name text NOT NULL,
    scheme text NOT NULL,
    options jsonb DEFAULT '{}'::jsonb NOT NULL,
    secrets jsonb DEFAULT '[]'::jsonb NOT NULL,
    transform text,
    source text NOT NULL,
    fingerprint text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhooks_scheme_check CHECK ((scheme = ANY (ARRAY['github'::text, 'stripe'::text, 'slack'::text, 'standardWebhooks'::text, 'hmac'::text, 'token'::text, 'none'::text])))
);

--
-- Name: work; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.work (
    id bigint NOT NULL,
    run_id uuid NOT NULL,
    step_id text NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    available_at timestamp with time zone NOT NULL,
    lease_owner text,
    lease_token uuid,
    resolves text,
    resolves_op text,
    resolves_name text,
    resolution jsonb,
    lease_expires_at timestamp with time zone,
    lost_leases integer DEFAULT 0 NOT NULL,
    claimed_memos integer DEFAULT 0 NOT NULL,
    concurrency_keys text[],
    concurrency_limits integer[],
    throttle_key text,
    throttle_interval interval,
    throttle_tolerance interval,
    finish_timeout interval,
    waiting text,
    waiting_key text,
    queued_at timestamp with time zone,
    CONSTRAINT work_lease_has_end CHECK (((lease_token IS NULL) = (lease_expires_at IS NULL))),
    CONSTRAINT work_waiting_check CHECK ((waiting = ANY (ARRAY['concurrency'::text, 'throttled'::text])))
);

--
-- Name: work_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.work_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: work_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.work_id_seq OWNED BY public.work.id;

--
-- Name: webhook_deliveries id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_deliveries ALTER COLUMN id SET DEFAULT nextval('public.webhook_deliveries_id_seq'::regclass);

--
-- Name: work id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.work ALTER COLUMN id SET DEFAULT nextval('public.work_id_seq'::regclass);

--
-- Name: api_tokens api_tokens_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.api_tokens
    ADD CONSTRAINT api_tokens_pkey PRIMARY KEY (sha256, source);

--
-- Name: batch_events batch_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_events
    ADD CONSTRAINT batch_events_pkey PRIMARY KEY (run_id, "position");

--
-- Name: batches batches_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batches
    ADD CONSTRAINT batches_pkey PRIMARY KEY (function_id, key);

--
-- Name: dashboard_sessions dashboard_sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.dashboard_sessions
    ADD CONSTRAINT dashboard_sessions_pkey PRIMARY KEY (id_sha256);

--
-- Name: debounces debounces_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.debounces
    ADD CONSTRAINT debounces_pkey PRIMARY KEY (function_id, key);

--
-- Name: event_keys event_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.event_keys
    ADD CONSTRAINT event_keys_pkey PRIMARY KEY (sha256, namespace);

--
-- Name: flow_keys flow_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.flow_keys
    ADD CONSTRAINT flow_keys_pkey PRIMARY KEY (key);

--
-- Name: functions functions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.functions
    ADD CONSTRAINT functions_pkey PRIMARY KEY (id);

--
-- Name: idempotency_keys idempotency_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (function_id, key);

--
-- Name: rate_limits rate_limits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limits
    ADD CONSTRAINT rate_limits_pkey PRIMARY KEY (function_id, key);

--
-- Name: runs runs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

--
-- Name: signing_keys signing_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.signing_keys
    ADD CONSTRAINT signing_keys_pkey PRIMARY KEY (namespace);

--
-- Name: singletons singletons_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.singletons
    ADD CONSTRAINT singletons_pkey PRIMARY KEY (function_id, key);

--
-- Name: skipped_events skipped_events_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.skipped_events
    ADD CONSTRAINT skipped_events_pkey PRIMARY KEY (event_id, function_id);

--
-- Name: step_attempts step_attempts_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.step_attempts
    ADD CONSTRAINT step_attempts_pkey PRIMARY KEY (run_id, hash, attempt);

--
-- Name: stepline_migrations stepline_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.stepline_migrations
    ADD CONSTRAINT stepline_migrations_pkey PRIMARY KEY (version);

--
-- Name: steps steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.steps
    ADD CONSTRAINT steps_pkey PRIMARY KEY (run_id, hash);

--
-- Name: waits waits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.waits
    ADD CONSTRAINT waits_pkey PRIMARY KEY (run_id, hash);

--
-- Name: webhook_deliveries webhook_deliveries_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);

--
-- Name: webhooks webhooks_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.webhooks
    ADD CONSTRAINT webhooks_pkey PRIMARY KEY (namespace, name);

--
-- Name: work work_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.work
    ADD CONSTRAINT work_pkey PRIMARY KEY (id);

--
-- Name: work work_run_id_step_id_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.work
    ADD CONSTRAINT work_run_id_step_id_key UNIQUE (run_id, step_id);

--
-- Name: api_tokens_source; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX api_tokens_source ON public.api_tokens USING btree (source);

--
-- Name: batch_events_event; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX batch_events_event ON public.batch_events USING btree (event_id);

--
-- Name: batches_run; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX batches_run ON public.batches USING btree (run_id);

--
-- Name: dashboard_sessions_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX dashboard_sessions_expiry ON public.dashboard_sessions USING btree (expires_at);

--
-- Name: debounces_run; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX debounces_run ON public.debounces USING btree (run_id);

--
-- Name: event_keys_source; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX event_keys_source ON public.event_keys USING btree (source);

--
-- Name: events_namespaces; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_namespaces ON ONLY public.events USING gin (namespaces) WHERE (namespaces IS NOT NULL);

--
-- Name: events_received; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX events_received ON ONLY public.events USING btree (received_at DESC, id DESC);

--
-- Name: functions_app; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX functions_app ON public.functions USING btree (app_id);

--
-- Name: functions_namespace; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX functions_namespace ON public.functions USING btree (namespace);

--
-- Name: idempotency_keys_expiry; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX idempotency_keys_expiry ON public.idempotency_keys USING btree (expires_at);

--
-- Name: rate_limits_tat; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rate_limits_tat ON public.rate_limits USING btree (tat);

--
-- Name: runs_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX runs_created ON ONLY public.runs USING btree (created_at DESC, id DESC);

--
-- Name: runs_event; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX runs_event ON ONLY public.runs USING btree (event_id);

--
-- Name: runs_function_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX runs_function_created ON ONLY public.runs USING btree (function_id, created_at DESC, id DESC);

--
-- Name: runs_namespace_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX runs_namespace_created ON ONLY public.runs USING btree ((
CASE
    WHEN (strpos(function_id, '/'::text) > 0) THEN split_part(function_id, '/'::text, 1)
    ELSE 'default'::text
END), created_at DESC, id DESC);

--
-- Name: runs_status_created; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX runs_status_created ON ONLY public.runs USING btree (status, created_at DESC, id DESC);

--
-- Name: waits_event; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX waits_event ON public.waits USING btree (event_name);

--
-- Name: webhook_deliveries_of_webhook; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_deliveries_of_webhook ON public.webhook_deliveries USING btree (namespace, name, received_at DESC, id DESC);

--
-- Name: webhook_deliveries_recent; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX webhook_deliveries_recent ON public.webhook_deliveries USING btree (received_at DESC, id DESC);

--
-- Name: work_due; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX work_due ON public.work USING btree (available_at) WHERE (lease_token IS NULL);

--
-- Name: work_leased; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX work_leased ON public.work USING btree (lease_expires_at) WHERE (lease_token IS NOT NULL);

--
-- Name: work_waiting_for_slot; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX work_waiting_for_slot ON public.work USING btree (waiting_key, queued_at, id) WHERE (waiting = 'concurrency'::text);

--
-- Name: steps steps_memo_written_once; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER steps_memo_written_once BEFORE UPDATE ON public.steps FOR EACH ROW WHEN ((old.memo IS NOT NULL)) EXECUTE FUNCTION public.stepline_keep_recorded_step();

--
-- Name: work work_deleted_slots; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER work_deleted_slots AFTER DELETE ON public.work FOR EACH ROW WHEN (((old.concurrency_keys IS NOT NULL) AND (old.lease_token IS NOT NULL))) EXECUTE FUNCTION public.work_concurrency_slots();

--
-- Name: work work_lease_slots; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER work_lease_slots AFTER UPDATE OF lease_token ON public.work FOR EACH ROW WHEN (((old.concurrency_keys IS NOT NULL) AND ((old.lease_token IS NULL) <> (new.lease_token IS NULL)))) EXECUTE FUNCTION public.work_concurrency_slots();

--
-- Name: batch_events batch_events_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.batch_events
    ADD CONSTRAINT batch_events_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

--
-- Name: waits waits_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.waits
    ADD CONSTRAINT waits_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

--
-- Name: work work_run_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.work
    ADD CONSTRAINT work_run_id_fkey FOREIGN KEY (run_id) REFERENCES public.runs(id) ON DELETE CASCADE;

--
-- PostgreSQL database dump complete
--
