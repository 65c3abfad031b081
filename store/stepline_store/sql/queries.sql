-- Every SQL statement Stepline runs, by name. stepline_store.sql loads this file; nothing else writes SQL.
-- scripts/generate-queries turns it into stepline_store/queries.py: one typed async function per query,
-- with the parameter and column types that Postgres itself reports for the statement. Each query says:
--   -- name: <name> :<kind>   many: a list of rows; one: a row or None; value: the first column of the
--                             first row (None when there is none); exec: the command status ("UPDATE 3")
--   -- params: a, b?, c       the keyword names of $1, $2, $3...; "?" marks one that may be NULL (None)
--   -- nullable: x, y         the result columns that may be NULL (an outer join, a nullable column, an
--                             aggregate or function that can answer NULL); the others are never NULL
-- Array parameters may hold NULLs; the arrays that queries answer never do. The prose under the annotations
-- says what the query does and what each parameter means.
-- A step whose memo is recorded is never changed again, whatever a statement asks: migration 0018's trigger
-- skips such an update (so the upserts of steps below carry no condition for it).

-- name: load_functions :many
-- nullable: checkpoint, flow, retry_policy
SELECT id, app_id, name, url, triggers, retries, paused, source, cancel_on, checkpoint, flow, retry_policy,
       created_at, updated_at
FROM functions ORDER BY id;

-- name: set_cancel_rules :exec
-- params: function_ids, cancel_rules
-- $1 function ids, $2 their cancel rules (JSON text: [{"event", "if"?, "timeout"?}])
UPDATE functions SET cancel_on = c.rules::jsonb
FROM unnest($1::text[], $2::text[]) AS c (id, rules)
WHERE functions.id = c.id AND functions.cancel_on IS DISTINCT FROM c.rules::jsonb;

-- name: set_checkpoint_settings :exec
-- params: function_ids, checkpoint_settings
-- $1 function ids, $2 their checkpoint settings from the sync (JSON text, null when none were sent)
UPDATE functions SET checkpoint = c.settings::jsonb
FROM unnest($1::text[], $2::text[]) AS c (id, settings)
WHERE functions.id = c.id AND functions.checkpoint IS DISTINCT FROM c.settings::jsonb;

-- name: set_flow_control :exec
-- params: function_ids, flows, retry_policies
-- $1 function ids, $2 their flow-control settings, $3 their retry policies (JSON text each, null when none)
UPDATE functions SET flow = c.flow::jsonb, retry_policy = c.retry_policy::jsonb
FROM unnest($1::text[], $2::text[], $3::text[]) AS c (id, flow, retry_policy)
WHERE functions.id = c.id
  AND (functions.flow IS DISTINCT FROM c.flow::jsonb
       OR functions.retry_policy IS DISTINCT FROM c.retry_policy::jsonb);

-- name: upsert_functions :exec
-- params: ids, app_ids, names, urls, triggers, retries, paused, sources
-- $1 ids, $2 app ids, $3 names, $4 urls, $5 triggers (JSON text), $6 retries, $7 paused, $8 sources
INSERT INTO functions (id, app_id, name, url, triggers, retries, paused, source, updated_at)
SELECT f.id, f.app_id, f.name, f.url, f.triggers::jsonb, f.retries, f.paused, f.source, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bool[], $8::text[])
     AS f (id, app_id, name, url, triggers, retries, paused, source)
ON CONFLICT (id) DO UPDATE SET
    app_id = EXCLUDED.app_id, name = EXCLUDED.name, url = EXCLUDED.url, triggers = EXCLUDED.triggers,
    retries = EXCLUDED.retries, paused = EXCLUDED.paused, source = EXCLUDED.source, updated_at = now();

-- name: delete_functions_of_source_except :exec
-- params: source, keep_ids
-- $1 source, $2 ids to keep
DELETE FROM functions WHERE source = $1 AND NOT (id = ANY($2::text[]));

-- name: delete_app_functions_except :exec
-- params: app_id, source, keep_ids, namespace?
-- $1 app id, $2 source, $3 ids to keep, $4 the app's namespace (null: every namespace): an app's sync
-- replaces what that app published before in its namespace
DELETE FROM functions WHERE app_id = $1 AND source = $2 AND NOT (id = ANY($3::text[]))
    AND ($4::text IS NULL OR namespace = $4::text);

-- name: notify_routes :exec
SELECT pg_notify('stepline_routes', '');

-- name: ingest :one
-- params: event_ids, event_names, event_data, event_users, event_ts, clock_offset, run_ids, run_event_ids, function_ids, function_names, urls, max_attempts, parent_run_ids, parent_steps, event_versions, leased_run_ids, lease_owner?, lease_duration?, namespaces?
-- Stores events (a known id is skipped) and, for the events that are new, their runs and first calls;
-- answers the open waits for the new events' names, to be matched by the caller in the same transaction.
-- Times are the database's: "now" is statement_timestamp() + $6, the clock offset (zero but in tests). A
-- first call is due at statement_timestamp() itself, which every replica sees as due whatever its offset,
-- or at the event's ts when that lies ahead; an event sent without a ts gets now as its ts.
-- $1 event ids, $2 names, $3 data, $4 users, $5 ts (ms; null: now), $6 clock offset,
-- $7 run ids, $8 their event ids, $9 function ids, $10 function names, $11 urls, $12 max attempts,
-- $13 parent run ids, $14 parent step hashes (null unless invoked), $15 event versions (null when none).
-- A run started where it was ingested: $16 the run ids whose first call is leased to owner $17 for $18 (from
-- statement_timestamp()) when it is due at once; those runs are Running already. The NOTIFY wakes the
-- replicas for calls left unleased; for leased ones a 'leased' notification tells them when to look for a
-- lapsed lease (the ingesting replica may die before it makes the call).
-- $19 the namespaces the events were sent into (null: every namespace).
WITH clock AS (
    SELECT statement_timestamp() + $6::interval AS now
), new_events AS (
    INSERT INTO events (id, name, data, "user", ts, received_at, v, namespaces)
    SELECT e.id, e.name, e.data, e.usr, coalesce(e.ts, floor(extract(epoch FROM c.now) * 1000)::bigint), c.now,
           e.v, $19::text[]
    FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[], $5::bigint[], $15::text[])
         AS e (id, name, data, usr, ts, v)
    CROSS JOIN clock c
    -- History is partitioned by day, each day's partition unique on id: an id kept in another day is
    -- looked up (one index probe per day kept), one sent twice at once is stopped by the day's index. A
    -- subquery per event rather than an anti-join, which may hand the events on in another order (the runs
    -- and their calls are made in the order the events came).
    WHERE (SELECT count(*) FROM events kept WHERE kept.id = e.id) = 0
    ON CONFLICT DO NOTHING
    RETURNING id, name, ts
), new_runs AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at,
                      parent_run_id, parent_step, started_at)
    SELECT r.run_id, r.event_id, r.function_id, r.function_name, r.url, r.max_attempts,
           CASE WHEN l.here THEN 'Running' ELSE 'Queued' END, c.now, r.parent_run_id, r.parent_step,
           CASE WHEN l.here THEN c.now END
    FROM unnest($7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::uuid[],
                $14::text[])
         AS r (run_id, event_id, function_id, function_name, url, max_attempts, parent_run_id, parent_step)
    JOIN new_events e ON e.id = r.event_id
    CROSS JOIN clock c
    CROSS JOIN LATERAL (
        SELECT r.run_id = ANY($16::uuid[]) AND to_timestamp(e.ts / 1000.0) <= c.now AS here
    ) AS l
    RETURNING id, event_id, status = 'Running' AS here
), new_work AS (
    INSERT INTO work (run_id, step_id, available_at, lease_owner, lease_token, lease_expires_at)
    SELECT n.id, 'step', CASE WHEN to_timestamp(e.ts / 1000.0) > c.now THEN to_timestamp(e.ts / 1000.0)
                              ELSE statement_timestamp() END,
           CASE WHEN n.here THEN $17::text END, CASE WHEN n.here THEN gen_random_uuid() END,
           CASE WHEN n.here THEN statement_timestamp() + $18::interval END
    FROM new_runs n JOIN new_events e ON e.id = n.event_id CROSS JOIN clock c
    RETURNING id, run_id, available_at, lease_token
)
SELECT (SELECT coalesce(jsonb_object_agg(id, ts), '{}'::jsonb) FROM new_events) AS new_events,
       (SELECT count(*) FROM new_work) AS runs_created,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM new_work
                              WHERE available_at <= (SELECT now FROM clock) AND lease_token IS NULL
                              LIMIT 1) AS n) AS notified,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', 'leased') FROM new_work
                              WHERE lease_token IS NOT NULL LIMIT 1) AS n) AS notified_leased,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'run_id', run_id, 'lease_token', lease_token)),
                        '[]'::jsonb)
        FROM new_work WHERE lease_token IS NOT NULL) AS leased,
       (SELECT now FROM clock) AS now,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'run_id', w.run_id, 'function_id', r.function_id, 'hash', w.hash, 'event_name', w.event_name,
                'expression', w.expression,
                'event', jsonb_build_object('id', e.id, 'name', e.name, 'data', e.data, 'ts', e.ts))), '[]'::jsonb)
        FROM waits w JOIN runs r ON r.id = w.run_id JOIN events e ON e.id = r.event_id
        WHERE w.event_name IN (SELECT name FROM new_events)) AS waits;

-- name: resolve_waits :one
-- params: run_ids, step_hashes, events
-- Events arrived for open waits: each wait is closed and its parked call made due at once (the database's
-- statement_timestamp()) with the event as the step's memo. A wait closed already (another event was first)
-- is skipped. $1 run ids, $2 step hashes, $3 events (JSON text)
WITH matched AS (
    SELECT m.run_id, m.hash, m.event::jsonb AS event
    FROM unnest($1::uuid[], $2::text[], $3::text[]) AS m (run_id, hash, event)
), closed AS (
    DELETE FROM waits w USING matched m WHERE w.run_id = m.run_id AND w.hash = m.hash
    RETURNING w.run_id, w.hash
), due AS (
    UPDATE work SET resolution = m.event, available_at = statement_timestamp()
    FROM closed c JOIN matched m ON m.run_id = c.run_id AND m.hash = c.hash
    WHERE work.run_id = c.run_id AND work.resolves = c.hash
    RETURNING 1
)
SELECT (SELECT count(*) FROM due) AS resolved,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM due LIMIT 1) AS n) AS notified;

-- name: cancel_candidates :many
-- params: function_ids
-- Runs that a cancel rule may stop: those of functions $1 not yet ended, with their triggering events.
SELECT r.id, r.function_id, r.created_at, e.id AS event_id, e.name, e.data, e.ts
FROM runs r JOIN events e ON e.id = r.event_id
WHERE r.function_id = ANY($1::text[]) AND r.status IN ('Queued', 'Running');

-- name: replay_run :one
-- params: new_run_id, replayed_run_id, clock_offset, url?, max_attempts?
-- nullable: id
-- A new run of the same function on the same event (a batch run: on the same events), due at once. $1 new
-- run id, $2 run replayed, $3 clock offset, $4 url, $5 max attempts (from the current route when there is
-- one, else the old run's)
WITH new_run AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, replay_of, created_at,
                      batched)
    SELECT $1::uuid, event_id, function_id, function_name, coalesce($4::text, url),
           coalesce($5::int, max_attempts), 'Queued', id, statement_timestamp() + $3::interval, batched
    FROM runs WHERE id = $2::uuid
    RETURNING id, batched
), new_work AS (
    INSERT INTO work (run_id, step_id, available_at)
    SELECT id, 'step', statement_timestamp() FROM new_run RETURNING 1
), batch AS (
    INSERT INTO batch_events (run_id, position, event_id)
    SELECT n.id, b.position, b.event_id FROM new_run n JOIN batch_events b ON b.run_id = $2::uuid
    WHERE n.batched
)
SELECT (SELECT id FROM new_run) AS id,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM new_work LIMIT 1) AS n) AS notified;

-- name: claim_work :many
-- params: clock_offset, limit, lease_owner, lease_duration, urls_at_cap
-- nullable: resolves, resolves_op, resolves_name, resolution, event_user, event_v, batched, queued_s
-- Leases up to $2 calls to owner $3 for $4 (an interval of the database's clock), with all a call needs:
-- first calls whose lease lapsed (judged by statement_timestamp() alone, so that no replica's own clock
-- decides whether another one's lease is over), then due calls (available_at <= statement_timestamp() + $1,
-- the clock offset). Each source is a range scan of its partial index. A run calls its function's current
-- URL (an app that moved is followed); one whose function was unpublished keeps the URL it had.
-- $5 URLs at their share of the call slots: their work stays where it is (the URL of a row is looked up
-- only when $5 is not empty, one primary key read per row scanned: the usual claim reads only the queue).
-- lost_leases counts the claims in a row that found the previous lease lapsed (still set) with no memo
-- recorded since the claim before.
-- Flow control (docs/flow-control.md): due rows with concurrency keys or a throttle are "gated". The
-- flow_keys rows of their keys are locked in key order (FOR UPDATE reads their latest version, so a claim
-- that waited for another replica's sees what it took). A throttled first call may start at
-- max(tat, now) + n * interval - tolerance, n its place among the calls of its key in this claim; a later
-- one is held back until then (waiting 'throttled', a due time). A gated call takes a slot of each of its
-- keys in due order; one that finds a key full once this claim's calls are counted waits for it (waiting
-- 'concurrency', available_at 'infinity', its place kept in queued_at) until the trigger of 0011 wakes it;
-- one refused only because calls ahead of it took another key stays due for the next claim (so does a call
-- admitted but left out because lapsed leases filled the claim: a slot it was counted in is only late). Keys with a
-- slot left over after the claim wake that many of their waiting calls. When no due row is gated, these
-- steps read nothing. The claim that starts a run with timeouts.finish sets its timer ('timeout:finish').
-- The claimed rows of work are read by their ids, and each run by its id alone (LATERAL ... LIMIT 1): with
-- joins, the planner may read the whole queue, or today's runs whole (or all the Queued ones), once per claim,
-- on statistics the day has outgrown, as it counts a lookup by id as a probe of every day's partition (not the
-- one left when the statement runs): a claim's cost would grow with the day (test_claim_reads.py).
-- Lock order: everywhere else a run's row is locked before its work rows. A claim picks work first, so it
-- never waits but for flow keys: its work rows and the runs it marks Running are both taken with SKIP LOCKED
-- (a Queued run that is locked is being cancelled, and its work row goes with it).
WITH lapsed AS (
    SELECT w.id FROM work w
    WHERE w.lease_token IS NOT NULL AND w.lease_expires_at <= statement_timestamp()
      AND (cardinality($5::text[]) = 0 OR (
          SELECT coalesce(f.url, r.url) FROM runs r LEFT JOIN functions f ON f.id = r.function_id
          WHERE r.id = w.run_id) <> ALL ($5::text[]))
    ORDER BY w.lease_expires_at LIMIT $2::int
    FOR UPDATE OF w SKIP LOCKED
), due AS (
    SELECT w.id, w.available_at, w.concurrency_keys, w.concurrency_limits, w.throttle_key, w.throttle_interval,
           w.throttle_tolerance
    FROM work w
    WHERE w.lease_token IS NULL AND w.available_at <= statement_timestamp() + $1::interval
      AND (cardinality($5::text[]) = 0 OR (
          SELECT coalesce(f.url, r.url) FROM runs r LEFT JOIN functions f ON f.id = r.function_id
          WHERE r.id = w.run_id) <> ALL ($5::text[]))
    ORDER BY w.available_at LIMIT $2::int
    FOR UPDATE OF w SKIP LOCKED
), gated AS (
    SELECT * FROM due WHERE concurrency_keys IS NOT NULL OR throttle_key IS NOT NULL
), gate_keys AS (
    SELECT k.key, k.in_flight, greatest(k.tat, statement_timestamp() + $1::interval) AS tat
    FROM flow_keys k
    WHERE k.key IN (SELECT unnest(g.concurrency_keys) FROM gated g UNION SELECT g.throttle_key FROM gated g)
    ORDER BY k.key
    FOR UPDATE OF k
), paced AS (
    SELECT g.id, k.tat - g.throttle_tolerance + (row_number() OVER (
               PARTITION BY g.throttle_key ORDER BY g.available_at, g.id) - 1) * g.throttle_interval AS start_at
    FROM gated g JOIN gate_keys k ON k.key = g.throttle_key
), held_back AS (
    SELECT id, start_at FROM paced WHERE start_at > statement_timestamp() + $1::interval
), slots AS (
    SELECT g.id, c.key, c.lim, k.in_flight,
           row_number() OVER (PARTITION BY c.key ORDER BY g.available_at, g.id) AS place
    FROM gated g
    CROSS JOIN LATERAL unnest(g.concurrency_keys, g.concurrency_limits) AS c (key, lim)
    JOIN gate_keys k ON k.key = c.key
    WHERE g.id NOT IN (SELECT id FROM held_back)
), refused AS (
    SELECT id FROM slots GROUP BY id HAVING bool_or(place > lim - in_flight)
), taken AS (
    SELECT s.key, max(s.lim) AS lim, max(s.in_flight) AS in_flight,
           count(*) FILTER (WHERE s.id NOT IN (SELECT id FROM refused)) AS taken
    FROM slots s GROUP BY s.key
), blocking AS (
    SELECT DISTINCT ON (s.id) s.id, s.key
    FROM slots s JOIN taken t ON t.key = s.key
    WHERE s.id IN (SELECT id FROM refused) AND t.in_flight + t.taken >= s.lim
    ORDER BY s.id, s.key
), picked AS (
    SELECT id FROM lapsed
    UNION ALL
    SELECT id FROM due WHERE id NOT IN (SELECT id FROM held_back) AND id NOT IN (SELECT id FROM refused)
    LIMIT $2::int
), claimed AS (
    UPDATE work w SET lease_owner = $3::text, lease_token = gen_random_uuid(),
                      lease_expires_at = statement_timestamp() + $4::interval,
                      lost_leases = CASE WHEN w.lease_token IS NULL OR (
                                             SELECT count(*) FROM steps s
                                             WHERE s.run_id = w.run_id AND s.memo IS NOT NULL) > w.claimed_memos
                                         THEN 0 ELSE w.lost_leases + 1 END,
                      claimed_memos = (SELECT count(*) FROM steps s
                                       WHERE s.run_id = w.run_id AND s.memo IS NOT NULL),
                      throttle_key = NULL, waiting = NULL, waiting_key = NULL
    WHERE w.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING w.id, w.run_id, w.step_id, w.attempt, w.lease_token, w.resolves, w.resolves_op, w.resolves_name,
              w.resolution, w.lost_leases, w.finish_timeout
), held_until AS (
    UPDATE work w SET available_at = h.start_at, waiting = 'throttled', waiting_key = NULL
    FROM held_back h WHERE w.id = h.id
), blocked AS (
    UPDATE work w SET available_at = 'infinity', waiting = 'concurrency', waiting_key = b.key,
                      queued_at = w.available_at
    FROM blocking b WHERE w.id = b.id
), paced_keys AS (
    UPDATE flow_keys k SET tat = t.tat + t.starts * t.step
    FROM (SELECT g.throttle_key AS key, max(k2.tat) AS tat, count(*) AS starts, max(g.throttle_interval) AS step
          FROM gated g JOIN gate_keys k2 ON k2.key = g.throttle_key
          WHERE g.id NOT IN (SELECT id FROM held_back) AND g.id NOT IN (SELECT id FROM refused)
          GROUP BY g.throttle_key) AS t
    WHERE k.key = t.key
), rewoken AS (
    UPDATE work w SET available_at = w.queued_at, waiting = NULL, waiting_key = NULL
    FROM (SELECT x.id FROM taken t CROSS JOIN LATERAL (
              SELECT id FROM work
              WHERE waiting = 'concurrency' AND waiting_key = t.key
              ORDER BY queued_at, id LIMIT greatest(t.lim - t.in_flight - t.taken, 0)
              FOR UPDATE SKIP LOCKED) AS x) AS r
    WHERE w.id = r.id
), starting AS (
    SELECT r.id FROM claimed c CROSS JOIN LATERAL (
        SELECT r.id FROM runs r WHERE r.id = c.run_id AND r.status = 'Queued'
        LIMIT 1 FOR NO KEY UPDATE OF r SKIP LOCKED) AS r
    WHERE c.step_id <> 'timeout:start'
), started AS (
    UPDATE runs r SET status = 'Running', started_at = statement_timestamp() + $1::interval
    FROM starting s WHERE r.id = s.id
), finish_timers AS (
    INSERT INTO work (run_id, step_id, available_at)
    SELECT c.run_id, 'timeout:finish', statement_timestamp() + $1::interval + c.finish_timeout
    FROM claimed c JOIN starting s ON s.id = c.run_id
    WHERE c.finish_timeout IS NOT NULL
    ON CONFLICT (run_id, step_id) DO NOTHING
)
SELECT c.id, c.run_id, c.step_id, c.attempt, c.lease_token, c.resolves, c.resolves_op, c.resolves_name,
       c.resolution, c.lost_leases, r.function_id, coalesce(f.url, r.url) AS url, r.max_attempts,
       e.id AS event_id, e.name AS event_name, e.data AS event_data, e."user" AS event_user, e.ts AS event_ts,
       e.v AS event_v, r.batched,
       -- A run this claim starts (its status before the claim): how long its first call waited since it
       -- fell due, for the schedule-to-start metric; null for every other call.
       CASE WHEN r.status = 'Queued' THEN extract(epoch FROM statement_timestamp() + $1::interval
                 - greatest(r.created_at, to_timestamp(e.ts / 1000.0)))::float8 END AS queued_s,
       (SELECT coalesce(jsonb_object_agg(s.hash, s.memo), '{}'::jsonb)
        FROM steps s WHERE s.run_id = c.run_id AND s.memo IS NOT NULL) AS memos,
       (SELECT coalesce(array_agg(s.hash ORDER BY s.ended_at, s.hash), '{}')
        FROM steps s WHERE s.run_id = c.run_id AND s.memo IS NOT NULL) AS stack
FROM claimed c CROSS JOIN LATERAL (SELECT * FROM runs r WHERE r.id = c.run_id LIMIT 1) AS r
     JOIN events e ON e.id = r.event_id LEFT JOIN functions f ON f.id = r.function_id
-- In the order the calls were made (the joins with the day partitions of history may hand them on in
-- another): calls due together are started first come, first served.
ORDER BY c.id;

-- name: next_due :value
-- params: clock_offset
-- nullable: extract
-- Seconds until a claim would find something (negative: already), null when the queue is empty: the next
-- due call for a replica of clock offset $1, or the next lease to lapse. Two first-row reads of the partial
-- indexes.
SELECT extract(epoch FROM least(
           (SELECT min(available_at) FROM work WHERE lease_token IS NULL)
               - (statement_timestamp() + $1::interval),
           (SELECT min(lease_expires_at) FROM work WHERE lease_token IS NOT NULL)
               - statement_timestamp()))::float8;

-- name: extend_leases :exec
-- params: work_ids, lease_tokens, lease_duration
-- The heartbeat: the leases this replica holds, named by work id and token ($1, $2), last $3 more from the
-- database's statement_timestamp(). Primary key lookups only; a row whose token changed (lost lease,
-- cancelled run) is left.
UPDATE work SET lease_expires_at = statement_timestamp() + $3::interval
FROM unnest($1::bigint[], $2::uuid[]) AS held (id, token)
WHERE work.id = held.id AND work.lease_token = held.token;

-- name: lock_run :value
-- params: run_id
-- nullable: status
-- Serialises the outcomes of one run's parallel calls. $1 run id. NO KEY UPDATE: steps inserted meanwhile
-- (their foreign key takes a KEY SHARE lock on the run) are not held up.
SELECT status FROM runs WHERE id = $1 FOR NO KEY UPDATE;

-- name: record_step :one
-- params: work_id, lease_token, run_id, step_hash, step_name, next_step_id, lease_duration, op, status, memo?, attempts, error?, elapsed_s, clock_offset
-- Records a step's memo once (a second record of the same step changes nothing; SQL NULL means JSON null)
-- and turns the held call into the next one: $6 next step id ("step" to discover what follows), its lease
-- renewed for $7 from the database's statement_timestamp().
-- $1 work id, $2 lease token, $3 run id, $4 step hash, $5 step name, $8 op, $9 status, $10 memo,
-- $11 attempts, $12 error, $13 seconds the step's call took, $14 clock offset
WITH held AS (
    UPDATE work SET step_id = $6::text, attempt = 0, lease_expires_at = statement_timestamp() + $7::interval,
                    resolves = NULL, resolves_op = NULL, resolves_name = NULL, resolution = NULL
    WHERE id = $1::bigint AND lease_token = $2::uuid
    RETURNING run_id
), closed_wait AS (
    DELETE FROM waits WHERE run_id = $3::uuid AND hash = $4::text AND EXISTS (SELECT 1 FROM held)
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, error, started_at, ended_at,
                       attempt_started_at)
    SELECT $3::uuid, $4::text, $5::text, $8::text, $9::text, $11::int, coalesce($10::jsonb, 'null'::jsonb),
           $12::jsonb, statement_timestamp() + $14::interval - $13::float8 * interval '1 second',
           statement_timestamp() + $14::interval,
           statement_timestamp() + $14::interval - $13::float8 * interval '1 second'
    FROM held
    ON CONFLICT (run_id, hash) DO UPDATE
        SET op = EXCLUDED.op, status = EXCLUDED.status, attempts = EXCLUDED.attempts, memo = EXCLUDED.memo,
            error = EXCLUDED.error, ended_at = EXCLUDED.ended_at, attempt_started_at = EXCLUDED.attempt_started_at
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) > 0 AS held, (SELECT count(*) FROM step) > 0 AS recorded,
       -- Memos the run had before this statement: more than the caller knows of means some came in through
       -- the checkpoint API meanwhile, and the next call must carry them too (run_memos).
       (SELECT count(*) FROM steps WHERE run_id = $3::uuid AND memo IS NOT NULL) AS memos_before;

-- name: record_steps :one
-- params: work_id, lease_token, run_id, hashes, names, ops, memos, durations_ms, clock_offset, checkpointed, signer?
-- nullable: function_id
-- Records steps that ran (StepRun), each once (a step recorded already keeps its memo), for the call that
-- holds work $1 with lease token $2, and restarts that call's attempt count when one was new: it made
-- progress (steps recorded before change nothing, or sending them again would retry without end). In order:
-- the steps ran one after the other before this statement, so each ends when the ones after it began (their
-- durations summed back from now), and a microsecond after the one before it at least, so that the stack
-- (ordered by end) and the step list (ordered by start) keep the order they were sent in. $3 run id, $4 hashes (no repeats), $5 names, $6 ops, $7 memos (JSON text), $8 durations in ms (null when
-- unknown), $9 clock offset, $10 whether they came through the checkpoint API, $11 the namespace whose signing key
-- made the post ('': the cluster's key, taken only for namespaces without keys of their own; null: not checked)
WITH held AS (
    SELECT id, attempt FROM work WHERE id = $1::bigint AND lease_token = $2::uuid AND run_id = $3::uuid
        AND ($11::text IS NULL OR EXISTS (
            SELECT 1 FROM runs AS r
            CROSS JOIN LATERAL (SELECT CASE WHEN strpos(r.function_id, '/') > 0
                                            THEN split_part(r.function_id, '/', 1) ELSE 'default' END AS ns) AS n
            WHERE r.id = $3::uuid AND CASE WHEN $11::text = ''
                THEN NOT EXISTS (SELECT 1 FROM signing_keys AS k WHERE k.namespace = n.ns)
                ELSE n.ns = $11::text END))
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at, checkpointed,
                       attempt_started_at)
    SELECT $3::uuid, s.hash, s.name, s.op, 'Completed', 1, s.memo::jsonb,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond', e.ended_at, $10::boolean,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond'
    FROM (
        SELECT u.*, coalesce(sum(coalesce(u.ms, 0)) OVER (
                   ORDER BY u.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0) AS later_ms
        FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::float8[])
             WITH ORDINALITY AS u (hash, name, op, memo, ms, n)
    ) AS s
    CROSS JOIN LATERAL (
        SELECT statement_timestamp() + $9::interval - s.later_ms * interval '1 millisecond'
               + (s.n - 1) * interval '1 microsecond' AS ended_at
    ) AS e
    CROSS JOIN held
    ON CONFLICT (run_id, hash) DO UPDATE
        SET op = EXCLUDED.op, status = EXCLUDED.status, attempts = steps.attempts + 1, memo = EXCLUDED.memo,
            error = NULL, ended_at = EXCLUDED.ended_at, checkpointed = EXCLUDED.checkpointed,
            attempt_started_at = EXCLUDED.attempt_started_at
    RETURNING 1
), restarted AS (
    -- Written only when there is something to restart: most calls that checkpoint are first attempts.
    UPDATE work SET attempt = 0 FROM held
    WHERE work.id = held.id AND held.attempt <> 0 AND EXISTS (SELECT 1 FROM step)
)
SELECT (SELECT count(*) FROM held) > 0 AS held, (SELECT count(*) FROM step) AS recorded,
       (SELECT function_id FROM runs WHERE id = $3::uuid) AS function_id;

-- name: record_steps_many :many
-- params: call_indexes, work_ids, lease_tokens, run_ids, clock_offsets, checkpointed, step_call_indexes, step_places, hashes, names, ops, memos, durations_ms, signers
-- nullable: function_id
-- record_steps for several calls at once (group commit across runs: stepline_gateway/step_combiner.py), one
-- statement and one commit for all of them; each call is fenced by its own lease token and answered on its own
-- row, so a stale lease refuses that call alone. No two calls of one run in the same statement. Per call
-- ($1 its index): $2 work ids, $3 lease tokens, $4 run ids, $5 clock offsets, $6 whether they came through the
-- checkpoint API, $14 the namespaces whose signing keys made the posts (as $11 of record_steps). Per step, in
-- each call's order: $7 the index of its call, $8 its place in that call (from 1), $9 hashes (no repeats
-- within a call), $10 names, $11 ops, $12 memos (JSON text), $13 durations in ms (null when unknown). Timing
-- and memo rules as in record_steps.
WITH calls AS (
    SELECT * FROM unnest($1::integer[], $2::bigint[], $3::uuid[], $4::uuid[], $5::interval[], $6::boolean[],
                         $14::text[])
        AS c (call, work_id, lease_token, run_id, clock_offset, checkpointed, signer)
), held AS (
    SELECT c.call, c.run_id, c.clock_offset, c.checkpointed, work.id, work.attempt
    FROM calls AS c
    JOIN work ON work.id = c.work_id AND work.lease_token = c.lease_token AND work.run_id = c.run_id
    WHERE c.signer IS NULL OR EXISTS (
        SELECT 1 FROM runs AS r
        CROSS JOIN LATERAL (SELECT CASE WHEN strpos(r.function_id, '/') > 0
                                        THEN split_part(r.function_id, '/', 1) ELSE 'default' END AS ns) AS n
        WHERE r.id = c.run_id AND CASE WHEN c.signer = ''
            THEN NOT EXISTS (SELECT 1 FROM signing_keys AS k WHERE k.namespace = n.ns)
            ELSE n.ns = c.signer END)
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at, checkpointed,
                       attempt_started_at)
    SELECT h.run_id, s.hash, s.name, s.op, 'Completed', 1, s.memo::jsonb,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond', e.ended_at, h.checkpointed,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond'
    FROM (
        SELECT u.*, coalesce(sum(coalesce(u.ms, 0)) OVER (
                   PARTITION BY u.call ORDER BY u.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0)
                   AS later_ms
        FROM unnest($7::integer[], $8::integer[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::float8[]) AS u (call, n, hash, name, op, memo, ms)
    ) AS s
    JOIN held AS h ON h.call = s.call
    CROSS JOIN LATERAL (
        SELECT statement_timestamp() + h.clock_offset - s.later_ms * interval '1 millisecond'
               + (s.n - 1) * interval '1 microsecond' AS ended_at
    ) AS e
    ON CONFLICT (run_id, hash) DO UPDATE
        SET op = EXCLUDED.op, status = EXCLUDED.status, attempts = steps.attempts + 1, memo = EXCLUDED.memo,
            error = NULL, ended_at = EXCLUDED.ended_at, checkpointed = EXCLUDED.checkpointed,
            attempt_started_at = EXCLUDED.attempt_started_at
    RETURNING run_id
), restarted AS (
    UPDATE work SET attempt = 0 FROM held
    WHERE work.id = held.id AND held.attempt <> 0 AND EXISTS (SELECT 1 FROM step WHERE step.run_id = held.run_id)
)
SELECT c.call, h.id IS NOT NULL AS held,
       (SELECT count(*) FROM step WHERE step.run_id = c.run_id) AS recorded,
       (SELECT function_id FROM runs WHERE runs.id = c.run_id) AS function_id
FROM calls AS c LEFT JOIN held AS h ON h.call = c.call
ORDER BY c.call;

-- name: finish_runs_many :many
-- params: call_indexes, work_ids, lease_tokens, run_ids, clock_offsets, outputs, step_call_indexes, step_places, hashes, names, ops, memos, durations_ms
-- nullable: function_id, created_at, ended_at
-- The steps at the end of a call's answer and the end of its run (Completed) for several calls at once (group
-- commit across runs: stepline_gateway/group_commit.py), one statement and one commit for all of them; what
-- record_steps and finish_run do for one call, each call fenced by its own lease token and answered on its
-- own row, so a stale lease refuses that call alone. No two calls of one run in the same statement. Per call
-- ($1 its index): $2 work ids, $3 lease tokens, $4 run ids, $5 clock offsets, $6 outputs (JSON text; null:
-- SQL null). Per step, in each call's order: $7 the index of its call, $8 its place in that call (from 1),
-- $9 hashes (no repeats within a call), $10 names, $11 ops, $12 memos (JSON text), $13 durations in ms (null
-- when unknown). Runs are locked before their work rows (the lock order), in the order of the calls.
WITH calls AS (
    SELECT * FROM unnest($1::integer[], $2::bigint[], $3::uuid[], $4::uuid[], $5::interval[], $6::text[])
        AS c (call, work_id, lease_token, run_id, clock_offset, output)
), held AS (
    SELECT c.call, c.run_id, c.clock_offset, c.output::jsonb AS output
    FROM calls AS c
    JOIN work ON work.id = c.work_id AND work.lease_token = c.lease_token AND work.run_id = c.run_id
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, started_at, ended_at, checkpointed,
                       attempt_started_at)
    SELECT h.run_id, s.hash, s.name, s.op, 'Completed', 1, s.memo::jsonb,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond', e.ended_at, false,
           e.ended_at - coalesce(s.ms, 0) * interval '1 millisecond'
    FROM (
        SELECT u.*, coalesce(sum(coalesce(u.ms, 0)) OVER (
                   PARTITION BY u.call ORDER BY u.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0)
                   AS later_ms
        FROM unnest($7::integer[], $8::integer[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::float8[]) AS u (call, n, hash, name, op, memo, ms)
    ) AS s
    JOIN held AS h ON h.call = s.call
    CROSS JOIN LATERAL (
        SELECT statement_timestamp() + h.clock_offset - s.later_ms * interval '1 millisecond'
               + (s.n - 1) * interval '1 microsecond' AS ended_at
    ) AS e
    ON CONFLICT (run_id, hash) DO UPDATE
        SET op = EXCLUDED.op, status = EXCLUDED.status, attempts = steps.attempts + 1, memo = EXCLUDED.memo,
            error = NULL, ended_at = EXCLUDED.ended_at, checkpointed = EXCLUDED.checkpointed,
            attempt_started_at = EXCLUDED.attempt_started_at
    RETURNING run_id
), ended AS (
    UPDATE runs SET status = 'Completed', output = h.output, error = NULL,
                    ended_at = statement_timestamp() + h.clock_offset
    FROM held AS h WHERE runs.id = h.run_id AND runs.status IN ('Queued', 'Running')
    RETURNING runs.id, runs.function_id, runs.parent_run_id, runs.parent_step, runs.created_at, runs.ended_at,
              runs.output
), dropped AS (
    DELETE FROM work WHERE run_id IN (SELECT id FROM ended)
), dropped_waits AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM ended)
), parent AS (
    UPDATE work SET available_at = statement_timestamp(), resolution = jsonb_build_object('data', ended.output)
    FROM ended WHERE work.run_id = ended.parent_run_id AND work.resolves = ended.parent_step
    RETURNING 1
)
SELECT c.call, h.call IS NOT NULL AS held,
       (SELECT count(*) FROM step WHERE step.run_id = c.run_id) AS recorded,
       e.id IS NOT NULL AS ended, e.function_id, e.created_at, e.ended_at,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM parent LIMIT 1) AS n) AS notified
FROM calls AS c LEFT JOIN held AS h ON h.call = c.call LEFT JOIN ended AS e ON e.id = c.run_id
ORDER BY c.call;

-- name: held_attempt :value
-- params: work_id, lease_token
-- nullable: attempt
-- The attempt count of the call holding work $1 with lease token $2 (null when the lease is lost): the
-- checkpoint API restarts it while the call runs.
SELECT attempt FROM work WHERE id = $1::bigint AND lease_token = $2::uuid;

-- name: run_memos :one
-- params: run_id
-- The memos and the stack of run $1, as claim_work gives them.
SELECT (SELECT coalesce(jsonb_object_agg(s.hash, s.memo), '{}'::jsonb)
        FROM steps s WHERE s.run_id = $1::uuid AND s.memo IS NOT NULL) AS memos,
       (SELECT coalesce(array_agg(s.hash ORDER BY s.ended_at, s.hash), '{}')
        FROM steps s WHERE s.run_id = $1::uuid AND s.memo IS NOT NULL) AS stack;

-- name: rediscover :one
-- params: work_id, lease_token, lease_duration, run_id
-- The service asked for a new call (DiscoveryRequest): the held call becomes a discovery call, its lease
-- renewed for $3 from the database's clock, with the run's memos and stack.
-- $1 work id, $2 lease token, $4 run id
WITH held AS (
    UPDATE work SET step_id = 'step', attempt = 0, lease_expires_at = statement_timestamp() + $3::interval
    WHERE id = $1::bigint AND lease_token = $2::uuid
    RETURNING run_id
)
SELECT (SELECT count(*) FROM held) > 0 AS held,
       (SELECT coalesce(jsonb_object_agg(s.hash, s.memo), '{}'::jsonb)
        FROM steps s WHERE s.run_id = $4::uuid AND s.memo IS NOT NULL) AS memos,
       (SELECT coalesce(array_agg(s.hash ORDER BY s.ended_at, s.hash), '{}')
        FROM steps s WHERE s.run_id = $4::uuid AND s.memo IS NOT NULL) AS stack;

-- name: record_parallel_step :one
-- params: work_id, lease_token, run_id, step_hash, step_name, op, status, memo?, attempts, error?, elapsed_s, clock_offset
-- Like record_step for a call that targeted one of several parallel steps (run locked by lock_run): the
-- call is done; the last one of the run to finish becomes the discovery call that goes on, released and due
-- at once for any replica. $1 work id, $2 lease token, $3 run id, $4 hash, $5 name, $6 op, $7 status,
-- $8 memo, $9 attempts, $10 error, $11 seconds the step's call took, $12 clock offset
WITH step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, memo, error, started_at, ended_at,
                       attempt_started_at)
    SELECT $3::uuid, $4::text, $5::text, $6::text, $7::text, $9::int, coalesce($8::jsonb, 'null'::jsonb),
           $10::jsonb, statement_timestamp() + $12::interval - $11::float8 * interval '1 second',
           statement_timestamp() + $12::interval,
           statement_timestamp() + $12::interval - $11::float8 * interval '1 second'
    WHERE EXISTS (SELECT 1 FROM work WHERE id = $1::bigint AND lease_token = $2::uuid)
    ON CONFLICT (run_id, hash) DO UPDATE
        SET op = EXCLUDED.op, status = EXCLUDED.status, attempts = EXCLUDED.attempts, memo = EXCLUDED.memo,
            error = EXCLUDED.error, ended_at = EXCLUDED.ended_at, attempt_started_at = EXCLUDED.attempt_started_at
    RETURNING 1
), others AS (
    SELECT count(*) AS n FROM work WHERE run_id = $3 AND id <> $1 AND step_id NOT LIKE 'timeout:%'
), done AS (
    DELETE FROM work WHERE id = $1 AND lease_token = $2 AND (SELECT n FROM others) > 0 RETURNING 1
), goes_on AS (
    UPDATE work SET step_id = 'step', attempt = 0, available_at = statement_timestamp(), resolves = NULL,
                    resolves_op = NULL, resolves_name = NULL, resolution = NULL, lease_owner = NULL,
                    lease_token = NULL, lease_expires_at = NULL
    WHERE id = $1 AND lease_token = $2 AND (SELECT n FROM others) = 0
    RETURNING 1
), closed_wait AS (
    DELETE FROM waits WHERE run_id = $3 AND hash = $4
)
SELECT (SELECT count(*) FROM goes_on) > 0 AS goes_on, (SELECT count(*) FROM done) > 0 AS done;

-- name: plan_steps :one
-- params: work_id, lease_token, run_id, hashes, names, clock_offset
-- The held call found parallel steps: one call per step, due at once, and the held call is done. Each step
-- begins a microsecond after the one before it, so that steps listed by start keep the order of the calls.
-- $1 work id, $2 lease token, $3 run id, $4 hashes (in call order), $5 names, $6 clock offset
WITH held AS (
    DELETE FROM work WHERE id = $1 AND lease_token = $2 RETURNING run_id, concurrency_keys, concurrency_limits
), planned AS (
    INSERT INTO steps (run_id, hash, name, op, status, started_at)
    SELECT $3::uuid, p.hash, p.name, 'StepPlanned', 'Planned',
           statement_timestamp() + $6::interval + (p.n - 1) * interval '1 microsecond'
    FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS p (hash, name, n), held
    ON CONFLICT (run_id, hash) DO NOTHING
    RETURNING hash
), calls AS (
    -- Each parallel step is a call of its own: under a concurrency limit, each takes a slot.
    INSERT INTO work (run_id, step_id, available_at, concurrency_keys, concurrency_limits)
    SELECT $3::uuid, p.hash, statement_timestamp(), held.concurrency_keys, held.concurrency_limits
    FROM unnest($4::text[]) AS p (hash), held
    ON CONFLICT (run_id, step_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM held) > 0 AS held,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM calls LIMIT 1) AS n) AS notified;

-- name: retry_call :one
-- params: work_id, lease_token, next_attempt, backoff, run_id, step_hash?, step_name?, error, clock_offset, not_before?, elapsed_s?
-- nullable: due
-- An attempt failed and may be tried again: the call is released with its attempt count raised, due after
-- $4 (the backoff, from statement_timestamp() + $9, the clock offset) and not before $10 (a retry-after
-- instant, or null), and a step's failed attempt is kept in its history. The run's row is locked first (the
-- lock order, see claim_work).
-- $1 work id, $2 lease token, $3 next attempt, $5 run id, $6 step hash (null for a function-level error),
-- $7 step name, $8 error, $11 seconds since the call of the failed attempt began (null: unknown). The
-- attempt began then, or when the last step recorded during that call ended, whichever is later.
WITH run AS (
    SELECT id FROM runs WHERE id = $5::uuid FOR NO KEY UPDATE
), held AS (
    UPDATE work SET step_id = coalesce($6::text, step_id), attempt = $3::int,
                    available_at = greatest(statement_timestamp() + $9::interval + $4::interval,
                                            $10::timestamptz),
                    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE id = $1 AND lease_token = $2 AND EXISTS (SELECT 1 FROM run)
    RETURNING run_id, available_at
), began AS (
    SELECT CASE WHEN $11::float8 IS NULL THEN statement_timestamp() + $9::interval
                ELSE greatest(statement_timestamp() + $9::interval - $11::float8 * interval '1 second',
                              (SELECT max(ended_at) FROM steps WHERE run_id = $5::uuid AND memo IS NOT NULL))
           END AS at
    WHERE $6::text IS NOT NULL
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, error, started_at)
    SELECT $5::uuid, $6::text, $7::text, 'StepError', 'Retrying', $3::int, $8::jsonb, began.at
    FROM held, began
    ON CONFLICT (run_id, hash) DO UPDATE
        SET status = 'Retrying', op = 'StepError', attempts = EXCLUDED.attempts, error = EXCLUDED.error
), history AS (
    INSERT INTO step_attempts (run_id, hash, attempt, error, ended_at, started_at)
    SELECT $5::uuid, $6::text, $3::int, $8::jsonb, statement_timestamp() + $9::interval,
           CASE WHEN $11::float8 IS NULL THEN NULL ELSE began.at END
    FROM held, began
    ON CONFLICT (run_id, hash, attempt) DO NOTHING
), last_error AS (
    UPDATE runs SET error = $8::jsonb FROM held WHERE runs.id = held.run_id
)
SELECT (SELECT count(*) FROM held) > 0 AS held, (SELECT available_at FROM held) AS due;

-- name: finish_run :one
-- params: run_id, status, output?, error?, clock_offset, work_id, lease_token
-- Ends a run (Completed or Failed), drops its calls and waits, and hands its result to the run that invoked
-- it (its parked call is due at once). $1 run id, $2 status, $3 output, $4 error, $5 clock offset, $6 work
-- id, $7 lease token (held by the caller). The run's row is locked before its work rows (the lock order).
WITH held AS (
    SELECT run_id FROM work WHERE id = $6::bigint AND lease_token = $7::uuid
), ended AS (
    UPDATE runs SET status = $2::text, output = $3::jsonb, error = $4::jsonb,
                    ended_at = statement_timestamp() + $5::interval
    FROM held WHERE runs.id = held.run_id AND runs.id = $1::uuid AND runs.status IN ('Queued', 'Running')
    RETURNING runs.id, runs.function_id, runs.event_id, runs.parent_run_id, runs.parent_step, runs.created_at,
              runs.ended_at
), dropped AS (
    DELETE FROM work WHERE run_id IN (SELECT id FROM ended)
), dropped_waits AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM ended)
), parent AS (
    UPDATE work SET available_at = statement_timestamp(),
                    resolution = CASE WHEN $2::text = 'Completed' THEN jsonb_build_object('data', $3::jsonb)
                                      ELSE jsonb_build_object('error', $4::jsonb) END
    FROM ended WHERE work.run_id = ended.parent_run_id AND work.resolves = ended.parent_step
    RETURNING 1
)
SELECT id, function_id, event_id, created_at, ended_at,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM parent LIMIT 1) AS n) AS notified
FROM ended;

-- name: park_call :one
-- params: work_id, lease_token, run_id, step_hash, step_name, op, step_status, delay, resolution?, clock_offset, event_name?, wait_expression?, not_before?
-- The held call waits: for a time (Sleep), an event (WaitForEvent, with an open wait) or a child run
-- (InvokeFunction). It is released until $8 from statement_timestamp() + $10 (the clock offset), and not
-- before $13 (an instant, or null); then it records $9 as the step's memo and goes on.
-- $1 work id, $2 lease token, $3 run id, $4 hash, $5 name, $6 op, $7 step status, $8 delay,
-- $9 resolution when it falls due, $11 event name to wait for (or null), $12 wait expression (or null)
WITH held AS (
    UPDATE work SET available_at = greatest(statement_timestamp() + $10::interval + $8::interval,
                                            $13::timestamptz),
                    resolves = $4::text, resolves_op = $6::text, resolves_name = $5::text,
                    resolution = $9::jsonb,
                    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE id = $1::bigint AND lease_token = $2::uuid
    RETURNING run_id
), step AS (
    INSERT INTO steps (run_id, hash, name, op, status, attempts, started_at)
    SELECT $3::uuid, $4::text, $5::text, $6::text, $7::text, 1, statement_timestamp() + $10::interval
    FROM held
    ON CONFLICT (run_id, hash) DO UPDATE SET op = EXCLUDED.op, status = EXCLUDED.status
), wait AS (
    INSERT INTO waits (run_id, hash, event_name, expression)
    SELECT $3::uuid, $4::text, $11::text, $12::text FROM held WHERE $11::text IS NOT NULL
    ON CONFLICT (run_id, hash) DO NOTHING
)
SELECT (SELECT count(*) FROM held) > 0 AS held;

-- name: cancel_runs :many
-- params: run_ids, clock_offset
-- Cancels the runs $1 that have not ended; drops their calls and waits. $2 clock offset. The runs' rows are
-- locked before their work rows (the lock order: see claim_work).
WITH cancelled AS (
    UPDATE runs SET status = 'Cancelled', ended_at = statement_timestamp() + $2::interval
    WHERE id = ANY($1::uuid[]) AND status IN ('Queued', 'Running')
    RETURNING id, function_id, event_id, created_at, ended_at
), dropped AS (
    DELETE FROM work WHERE run_id IN (SELECT id FROM cancelled)
), dropped_waits AS (
    DELETE FROM waits WHERE run_id IN (SELECT id FROM cancelled)
)
SELECT c.id, c.function_id, e.id AS event_id, e.name, e.data, e.ts, c.created_at, c.ended_at
FROM cancelled c JOIN events e ON e.id = c.event_id;

-- name: run_status :value
-- params: run_id
-- nullable: status
SELECT status FROM runs WHERE id = $1;

-- name: get_run :one
-- params: run_id
-- nullable: output, error, replay_of, started_at, ended_at
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r WHERE r.id = $1;

-- name: get_steps :many
-- params: run_id
-- nullable: memo, error, ended_at, attempt_started_at
SELECT s.hash, s.name, s.op, s.status, s.attempts, s.memo, s.error, s.started_at, s.ended_at, s.checkpointed,
       s.attempt_started_at,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('attempt', a.attempt, 'error', a.error,
                                                     'started_at', a.started_at, 'ended_at', a.ended_at)
                                  ORDER BY a.attempt), '[]'::jsonb)
        FROM step_attempts a WHERE a.run_id = s.run_id AND a.hash = s.hash) AS failed_attempts
FROM steps s WHERE s.run_id = $1 ORDER BY s.started_at, s.hash;

-- name: runs_page :many
-- params: since?, before_at?, before_id?, limit
-- nullable: output, error, replay_of, started_at, ended_at
-- Runs newest first, keyset paged. With its filtered twins below (one query per filter, so that every plan,
-- generic ones included, is a range scan of the index that fits, never reading the rows it skips):
-- $1 created at or after (null: no bound), $2/$3 rows before (created_at, id): the last row seen, or
-- (until, nil uuid) for "created before until" (null: no bound), $4 limit, then the filters.
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r
WHERE r.created_at >= coalesce($1::timestamptz, '-infinity')
  AND (r.created_at, r.id) < (coalesce($2::timestamptz, 'infinity'),
                              coalesce($3::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $4;

-- name: runs_page_of_function :many
-- params: since?, before_at?, before_id?, limit, function_id
-- nullable: output, error, replay_of, started_at, ended_at
-- Like runs_page; $5 function id
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r
WHERE r.function_id = $5::text
  AND r.created_at >= coalesce($1::timestamptz, '-infinity')
  AND (r.created_at, r.id) < (coalesce($2::timestamptz, 'infinity'),
                              coalesce($3::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $4;

-- name: runs_page_with_status :many
-- params: since?, before_at?, before_id?, limit, status
-- nullable: output, error, replay_of, started_at, ended_at
-- Like runs_page; $5 status
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r
WHERE r.status = $5::text
  AND r.created_at >= coalesce($1::timestamptz, '-infinity')
  AND (r.created_at, r.id) < (coalesce($2::timestamptz, 'infinity'),
                              coalesce($3::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $4;

-- name: runs_page_of_function_with_status :many
-- params: since?, before_at?, before_id?, limit, function_id, status
-- nullable: output, error, replay_of, started_at, ended_at
-- Like runs_page; $5 function id, $6 status (read through the function's index)
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r
WHERE r.function_id = $5::text AND r.status = $6::text
  AND r.created_at >= coalesce($1::timestamptz, '-infinity')
  AND (r.created_at, r.id) < (coalesce($2::timestamptz, 'infinity'),
                              coalesce($3::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $4;

-- name: runs_page_in_namespace :many
-- params: since?, before_at?, before_id?, limit, namespace, status?
-- nullable: output, error, replay_of, started_at, ended_at
-- Like runs_page, for one namespace (a namespace's token, the dashboard's selector); $5 the namespace, $6
-- status or null. The namespace is the expression of the runs_namespace_created index, read in its order.
SELECT r.id, r.function_id, r.function_name, r.url, r.status, r.event_id, r.output, r.error, r.replay_of,
       r.created_at, r.started_at, r.ended_at
FROM runs r
WHERE (CASE WHEN strpos(r.function_id, '/') > 0 THEN split_part(r.function_id, '/', 1) ELSE 'default' END)
      = $5::text
  AND ($6::text IS NULL OR r.status = $6::text)
  AND r.created_at >= coalesce($1::timestamptz, '-infinity')
  AND (r.created_at, r.id) < (coalesce($2::timestamptz, 'infinity'),
                              coalesce($3::uuid, '00000000-0000-0000-0000-000000000000'))
ORDER BY r.created_at DESC, r.id DESC
LIMIT $4;

-- name: count_recent_runs :many
-- params: since, at_most
-- The recent runs of each routed function by status (the dashboard's Functions page): those created at or
-- after $1, at most the newest $2 of each function, so that the cost stays bounded however busy the window.
SELECT f.id AS function_id, r.status, count(*) AS runs
FROM functions f
CROSS JOIN LATERAL (
    SELECT status FROM runs
    WHERE function_id = f.id AND created_at >= $1::timestamptz
    ORDER BY created_at DESC, id DESC
    LIMIT $2::int
) AS r
GROUP BY f.id, r.status
ORDER BY f.id, r.status;

-- name: get_event :one
-- params: event_id
-- nullable: user, v, namespaces
SELECT id, name, data, "user", ts, received_at, v, namespaces FROM events WHERE id = $1;

-- name: list_events :many
-- params: after_at?, after_id?, limit, name?
-- nullable: user, v, namespaces
-- Newest first, keyset paged: $1/$2 the last row seen (received_at, id) or null, $3 limit, $4 name or null
SELECT id, name, data, "user", ts, received_at, v, namespaces
FROM events
WHERE ($1::timestamptz IS NULL OR (received_at, id) < ($1, $2::text))
  AND ($4::text IS NULL OR name = $4)
ORDER BY received_at DESC, id DESC
LIMIT $3;

-- name: runs_of_events :many
-- params: event_ids
-- The runs of events $1: those they started, and the batch runs they are part of.
SELECT id, event_id, function_id, status, created_at FROM runs WHERE event_id = ANY($1::text[])
UNION ALL
SELECT r.id, b.event_id, r.function_id, r.status, r.created_at
FROM batch_events b JOIN runs r ON r.id = b.run_id
WHERE b.event_id = ANY($1::text[]) AND b.position > 0
ORDER BY created_at;

-- name: ping :value
SELECT 1;

-- name: lock_migrations :exec
-- params: lock_key
SELECT pg_advisory_lock($1);

-- name: unlock_migrations :exec
-- params: lock_key
SELECT pg_advisory_unlock($1);

-- name: create_migrations_table :exec
CREATE TABLE IF NOT EXISTS stepline_migrations (
    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: schema_version :value
SELECT CASE WHEN to_regclass('stepline_migrations') IS NULL THEN 0
            ELSE (SELECT coalesce(max(version), 0) FROM stepline_migrations) END;

-- name: migrations_after :value
-- params: version
-- The names of the migrations applied after version $1, as "NNNN name", in order
SELECT coalesce(array_agg(lpad(version::text, 4, '0') || ' ' || name ORDER BY version), '{}')
FROM stepline_migrations WHERE version > $1;

-- name: record_migration :exec
-- params: version, name
INSERT INTO stepline_migrations (version, name) VALUES ($1, $2);

-- name: create_history_partitions :value
-- params: first_day, last_day, lock_ms
-- Makes the day partitions of history (events, runs, steps, step attempts) from UTC day $1 to $2 that do not
-- exist yet, waiting at most $3 ms for a lock on the tables (else lock_not_available); answers how many days
-- were made.
SELECT stepline_create_history_partitions($1::date, $2::date, $3::int);

-- name: drop_history_before :value
-- params: clock_offset, retention, lock_ms
-- Retention: drops the days of history that ended at or before statement_timestamp() + $1 (the clock offset)
-- - $2 (the retention period), but those still holding a run not ended (or the event of one); a day whose
-- tables stay locked for $3 ms is left for the next time. Answers the days dropped.
SELECT stepline_drop_history_before(statement_timestamp() + $1::interval - $2::interval, $3::int);

-- name: history_days :many
-- The UTC days of history kept (the day partitions of runs), oldest first.
SELECT to_date(substr(c.relname, 7), 'YYYYMMDD') AS day
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'runs'::regclass AND c.relname ~ '^runs_p[0-9]{8}$'
ORDER BY day;

-- name: lock_function_id :exec
-- params: function_id
-- The operator's publish: serialises two resources that would publish the same function id. $1 function id
SELECT pg_advisory_xact_lock(hashtextextended('stepline.functions:' || $1::text, 0));

-- name: lock_function_ids :exec
-- params: function_ids
-- An SDK sync: the same locks as lock_function_id, for each of $1 (sorted, so two syncs never deadlock)
SELECT count(pg_advisory_xact_lock(hashtextextended('stepline.functions:' || k.id, 0)))
FROM (SELECT id FROM unnest($1::text[]) AS u (id) ORDER BY id) AS k;

-- name: sync_owners :many
-- params: function_ids, app_id, source, namespace
-- What an SDK sync of app $2 into namespace $4 would replace: the rows of the function ids $1 and the rows
-- app $2 synced there before (source $3)
SELECT id, app_id, url, source FROM functions
WHERE id = ANY($1::text[]) OR (app_id = $2::text AND source = $3::text AND namespace = $4::text) ORDER BY id;

-- name: function_owners :many
-- params: function_ids
-- What a load of manifest files would replace: the rows of the function ids $1
SELECT id, app_id, url, source FROM functions WHERE id = ANY($1::text[]) ORDER BY id;

-- name: functions_of_id_or_source :many
-- params: function_id, source
-- nullable: flow, retry_policy
-- What the operator's publish would replace: the row of function $1 and the rows published from source $2
SELECT id, app_id, name, url, triggers, retries, paused, source, cancel_on, flow, retry_policy
FROM functions WHERE id = $1::text OR source = $2::text ORDER BY id FOR UPDATE;

-- Events without Stepline's own (the dashboard and the API's first look)

-- name: list_events_in_namespace :many
-- params: after_received_at?, after_id?, limit, name?, namespace, include_internal
-- nullable: user, v
-- Like list_events, of the events sent into namespace $5 (not those sent to every namespace); $6 false leaves
-- out the events the system emits (inngest/*)
SELECT id, name, data, "user", ts, received_at, v, namespaces
FROM events
WHERE namespaces @> ARRAY[$5::text] AND namespaces IS NOT NULL
  AND ($1::timestamptz IS NULL OR (received_at, id) < ($1, $2::text))
  AND ($4::text IS NULL OR name = $4)
  AND ($6::boolean OR name NOT LIKE 'inngest/%')
ORDER BY received_at DESC, id DESC
LIMIT $3;

-- name: list_events_without_internal :many
-- params: after_received_at?, after_id?, limit, name?
-- nullable: user, v, namespaces
-- Like list_events, leaving out the events the system emits (names starting with inngest/)
SELECT id, name, data, "user", ts, received_at, v, namespaces
FROM events
WHERE ($1::timestamptz IS NULL OR (received_at, id) < ($1, $2::text))
  AND ($4::text IS NULL OR name = $4)
  AND name NOT LIKE 'inngest/%'
ORDER BY received_at DESC, id DESC
LIMIT $3;

-- Webhooks: the published webhooks (sealed secrets), their reload NOTIFY, and the log of recent deliveries.

-- name: load_webhooks :many
-- nullable: transform
SELECT namespace, name, scheme, options, secrets, transform, source, fingerprint, updated_at
FROM webhooks ORDER BY namespace, name;

-- name: lock_webhooks :exec
-- Serialises publishers (the operator, gateways loading manifests): a publish checks, then writes.
SELECT pg_advisory_xact_lock(hashtextextended('stepline.webhooks', 0));

-- name: webhooks_of_keys_or_source :many
-- params: namespaces, names, source
-- What a publish would replace: the rows of the given (namespace, name) pairs ($1, $2) and those of source $3
SELECT w.namespace, w.name, w.source, w.fingerprint
FROM webhooks w
WHERE w.source = $3::text
   OR (w.namespace, w.name) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY w.namespace, w.name;

-- name: upsert_webhooks :many
-- params: namespaces, names, schemes, options, sealed_secrets, transforms, sources, fingerprints
-- $1 namespaces, $2 names, $3 schemes, $4 options (JSON text), $5 sealed secrets (JSON text), $6 transforms,
-- $7 sources, $8 fingerprints. A row whose fingerprint and source are unchanged is not written; answers the
-- rows written.
INSERT INTO webhooks (namespace, name, scheme, options, secrets, transform, source, fingerprint, updated_at)
SELECT w.namespace, w.name, w.scheme, w.options::jsonb, w.secrets::jsonb, w.transform, w.source, w.fingerprint,
       now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
     AS w (namespace, name, scheme, options, secrets, transform, source, fingerprint)
ON CONFLICT (namespace, name) DO UPDATE SET
    scheme = EXCLUDED.scheme, options = EXCLUDED.options, secrets = EXCLUDED.secrets,
    transform = EXCLUDED.transform, source = EXCLUDED.source, fingerprint = EXCLUDED.fingerprint,
    updated_at = now()
WHERE webhooks.fingerprint IS DISTINCT FROM EXCLUDED.fingerprint OR webhooks.source <> EXCLUDED.source
RETURNING namespace, name;

-- name: delete_webhooks_of_source_except :many
-- params: source, keep_namespaces, keep_names
-- $1 source, $2/$3 the (namespace, name) pairs to keep; answers the rows deleted
DELETE FROM webhooks w
WHERE w.source = $1::text
  AND (w.namespace, w.name) NOT IN (SELECT * FROM unnest($2::text[], $3::text[]))
RETURNING namespace, name;

-- name: notify_webhooks :exec
SELECT pg_notify('stepline_webhooks', '');

-- name: record_webhook_delivery :exec
-- params: namespace, name, received_at, accepted, http_status, reason, event_ids
-- $1 namespace, $2 name, $3 received at, $4 accepted, $5 HTTP status, $6 reason, $7 event ids
INSERT INTO webhook_deliveries (namespace, name, received_at, accepted, status, reason, event_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7::text[]);

-- name: list_webhook_deliveries :many
-- params: limit
-- The newest $1 deliveries of every webhook
SELECT id, namespace, name, received_at, accepted, status, reason, event_ids
FROM webhook_deliveries ORDER BY received_at DESC, id DESC LIMIT $1::int;

-- name: list_deliveries_in_namespace :many
-- params: namespace, limit
-- The newest $2 deliveries of the webhooks of namespace $1 (a namespace's API token)
SELECT id, namespace, name, received_at, accepted, status, reason, event_ids
FROM webhook_deliveries WHERE namespace = $1
ORDER BY received_at DESC, id DESC LIMIT $2::int;

-- name: list_deliveries_of_webhook :many
-- params: namespace, name, limit
-- The newest $3 deliveries of webhook $1/$2
SELECT id, namespace, name, received_at, accepted, status, reason, event_ids
FROM webhook_deliveries WHERE namespace = $1 AND name = $2
ORDER BY received_at DESC, id DESC LIMIT $3::int;

-- name: prune_webhook_deliveries :exec
-- params: clock_offset, retention, keep_per_webhook
-- Deletes the deliveries received more than $2 (an interval) before statement_timestamp() + $1 (the clock
-- offset), and those beyond the newest $3 of each webhook
DELETE FROM webhook_deliveries WHERE received_at < statement_timestamp() + $1::interval - $2::interval OR id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY namespace, name ORDER BY received_at DESC, id DESC) AS n
        FROM webhook_deliveries
    ) AS ranked
    WHERE ranked.n > $3::int
);

-- Database faults and time from the database --------------------------------------------------------------

-- name: clock_now :value
-- params: clock_offset
-- The gateway's now: the database's clock plus $1, the clock offset (zero but in tests).
SELECT statement_timestamp() + $1::interval;

-- name: release_orphaned_leases :exec
-- params: lease_owner, held_work_ids
-- After a claim whose answer was lost (the connection died on the way back), the rows it may have leased to
-- owner $1 without the owner knowing: every row leased to $1 but the ones it holds ($2 work ids) is released,
-- due at once. Reads the partial index of leased rows (a few per replica).
UPDATE work SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
                available_at = statement_timestamp()
WHERE lease_token IS NOT NULL AND lease_owner = $1::text AND NOT (id = ANY($2::bigint[]));

-- Input limits and poison answers.

-- name: fail_step :exec
-- params: work_id, lease_token, run_id, step_hash, step_name, attempts, error, clock_offset
-- A step's last attempt failed and its run ends with that error: the step shows it too, Failed. $1 work id,
-- $2 lease token (held by the caller), $3 run id, $4 step hash, $5 step name, $6 attempts, $7 error,
-- $8 clock offset
INSERT INTO steps (run_id, hash, name, op, status, attempts, error, started_at, ended_at)
SELECT $3::uuid, $4::text, $5::text, 'StepError', 'Failed', $6::int, $7::jsonb,
       statement_timestamp() + $8::interval, statement_timestamp() + $8::interval
WHERE EXISTS (SELECT 1 FROM work WHERE id = $1::bigint AND lease_token = $2::uuid)
ON CONFLICT (run_id, hash) DO UPDATE
    SET status = 'Failed', op = 'StepError', attempts = EXCLUDED.attempts, error = EXCLUDED.error,
        ended_at = EXCLUDED.ended_at;

-- name: next_due_except :value
-- params: clock_offset, capped_urls
-- nullable: extract
-- Like next_due, leaving out the work of $2, URLs at their share of the call slots (a slot of theirs that
-- frees wakes the dispatcher instead). Only asked while some URL is at its share: each read walks its
-- partial index in order, looking up the URL of each row until one is not capped. $1 clock offset
SELECT extract(epoch FROM least(
           (SELECT w.available_at FROM work w
            WHERE w.lease_token IS NULL AND (
                SELECT coalesce(f.url, r.url) FROM runs r LEFT JOIN functions f ON f.id = r.function_id
                WHERE r.id = w.run_id) <> ALL ($2::text[])
            ORDER BY w.available_at LIMIT 1)
               - (statement_timestamp() + $1::interval),
           (SELECT w.lease_expires_at FROM work w
            WHERE w.lease_token IS NOT NULL AND (
                SELECT coalesce(f.url, r.url) FROM runs r LEFT JOIN functions f ON f.id = r.function_id
                WHERE r.id = w.run_id) <> ALL ($2::text[])
            ORDER BY w.lease_expires_at LIMIT 1)
               - statement_timestamp()))::float8;

-- Observability: the queue as the metrics show it, and the live counts the operator writes on Functions.

-- name: queue_depth :many
-- params: clock_offset
-- nullable: oldest_due_s
-- The queue by function and by why each call waits, for the metrics (one read per scrape, shared by
-- concurrent scrapes): every work row once, its run's function by primary key (never a read of the run
-- history). A call is "running" while its lease holds; due (a claim would take it now: unleased and due for a
-- replica of clock offset $1, or its lease lapsed) it is "queued"; otherwise it waits for the end of a sleep,
-- an event, an invoked run, a retry's backoff, or the event's ts ("scheduled"), or for flow control: a slot
-- of a concurrency key ("concurrency"), the start a throttle allows ("throttled"), a debounce ("debounced"),
-- a batch to fill ("batching"). Runs are counted once per
-- reason their calls have; oldest_due_s is how long the oldest due call has been due.
SELECT q.function_id, q.reason, count(DISTINCT q.run_id) AS runs, count(*) FILTER (WHERE q.due) AS calls_due,
       extract(epoch FROM statement_timestamp() + $1::interval - min(q.due_at) FILTER (WHERE q.due))::float8
           AS oldest_due_s
FROM (
    -- A subquery per row rather than a join: a join may read the whole run history to hash it.
    SELECT w.run_id, (SELECT r.function_id FROM runs r WHERE r.id = w.run_id) AS function_id,
           CASE WHEN w.lease_token IS NULL THEN w.available_at ELSE w.lease_expires_at END AS due_at,
           CASE WHEN w.lease_token IS NULL THEN w.available_at <= statement_timestamp() + $1::interval
                ELSE w.lease_expires_at <= statement_timestamp() END AS due,
           CASE WHEN w.lease_token IS NOT NULL AND w.lease_expires_at > statement_timestamp() THEN 'running'
                WHEN w.lease_token IS NOT NULL OR w.available_at <= statement_timestamp() + $1::interval
                    THEN 'queued'
                WHEN w.waiting = 'concurrency' THEN 'concurrency'
                WHEN w.waiting = 'throttled' THEN 'throttled'
                WHEN w.resolves_op = 'Sleep' THEN 'sleeping'
                WHEN w.resolves_op = 'WaitForEvent' THEN 'waiting'
                WHEN w.resolves_op = 'InvokeFunction' THEN 'invoking'
                WHEN w.attempt > 0 THEN 'retrying'
                -- Read only for the rest: a run's first call held back by debounce or by its batch.
                WHEN w.step_id = 'step' AND EXISTS (SELECT 1 FROM debounces d WHERE d.run_id = w.run_id)
                    THEN 'debounced'
                WHEN w.step_id = 'step' AND EXISTS (SELECT 1 FROM batches b WHERE b.run_id = w.run_id)
                    THEN 'batching'
                ELSE 'scheduled' END AS reason
    FROM work w
    -- The timers of timeouts are not calls.
    WHERE w.step_id NOT LIKE 'timeout:%'
) AS q
GROUP BY q.function_id, q.reason;

-- name: function_stats :many
-- params: source_patterns, counted_at_most
-- nullable: last_run_at
-- The live counts of the functions whose source is LIKE one of $1 (the operator's Function resources:
-- 'kubernetes:%', or 'kubernetes:<namespace>/%' for each namespace it watches), for
-- status.stats: runs Running and Queued now, Completed and Failed in the last hour and day (by creation, at
-- most the newest $2 of each function in the day, so that a tick's cost stays bounded however busy), and
-- when the newest run was created. Times are the database's.
WITH watched AS (
    SELECT id, source FROM functions WHERE source LIKE ANY($1::text[])
), active AS (
    SELECT r.function_id, count(*) FILTER (WHERE r.status = 'Running') AS running,
           count(*) FILTER (WHERE r.status = 'Queued') AS queued
    FROM runs r
    WHERE r.status IN ('Queued', 'Running') AND r.function_id IN (SELECT id FROM watched)
    GROUP BY r.function_id
)
SELECT w.source, w.id AS function_id, coalesce(a.running, 0) AS running, coalesce(a.queued, 0) AS queued,
       d.completed_hour, d.failed_hour, d.completed_day, d.failed_day,
       (SELECT max(created_at) FROM runs WHERE function_id = w.id) AS last_run_at
FROM watched w
LEFT JOIN active a ON a.function_id = w.id
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.status = 'Completed' AND x.created_at >= statement_timestamp() - interval '1 hour')
               AS completed_hour,
           count(*) FILTER (WHERE x.status = 'Failed' AND x.created_at >= statement_timestamp() - interval '1 hour')
               AS failed_hour,
           count(*) FILTER (WHERE x.status = 'Completed') AS completed_day,
           count(*) FILTER (WHERE x.status = 'Failed') AS failed_day
    FROM (SELECT status, created_at FROM runs
          WHERE function_id = w.id AND created_at >= statement_timestamp() - interval '1 day'
          ORDER BY created_at DESC, id DESC LIMIT $2::int) AS x
) AS d
ORDER BY w.source, w.id;

-- Flow control at claim time (docs/flow-control.md; the claim itself is claim_work).

-- name: gate_runs :one
-- params: run_ids, concurrency_keys, throttle_keys, throttle_labels, throttle_interval_seconds, throttle_tolerance_seconds, priority_seconds, start_timeout_seconds, finish_timeout_seconds, clock_offset
-- The flow control of runs just created (their first call, 'step', not yet committed): $1 run ids, $2 their
-- concurrency keys (JSON text [[key, label, limit], ...], or null), $3 throttle keys, $4 throttle labels,
-- $5 seconds between throttled starts, $6 seconds a start may run ahead of that pace, $7 priority (seconds
-- the first call moves ahead in the queue; negative: later), $8 timeouts.start, $9 timeouts.finish (seconds,
-- or null), $10 clock offset. Writes the keys' rows, the flow columns of each first call, and the timer of
-- timeouts.start ('timeout:start', a work row due when it runs out).
WITH g AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::int[],
                         $8::float8[], $9::float8[])
         AS g (run_id, keys, throttle_key, throttle_label, interval_s, tolerance_s, priority_s, start_s, finish_s)
), keys AS (
    INSERT INTO flow_keys (key, label)
    SELECT k.value->>0, k.value->>1 FROM g CROSS JOIN LATERAL jsonb_array_elements(g.keys::jsonb) AS k
    WHERE g.keys IS NOT NULL
    UNION
    SELECT g.throttle_key, g.throttle_label FROM g WHERE g.throttle_key IS NOT NULL
    ON CONFLICT (key) DO NOTHING
), gated AS (
    UPDATE work w SET
        concurrency_keys = (SELECT array_agg(k.value->>0 ORDER BY k.n)
                            FROM jsonb_array_elements(g.keys::jsonb) WITH ORDINALITY AS k (value, n)),
        concurrency_limits = (SELECT array_agg((k.value->>2)::int ORDER BY k.n)
                              FROM jsonb_array_elements(g.keys::jsonb) WITH ORDINALITY AS k (value, n)),
        throttle_key = g.throttle_key,
        throttle_interval = g.interval_s * interval '1 second',
        throttle_tolerance = g.tolerance_s * interval '1 second',
        finish_timeout = g.finish_s * interval '1 second',
        available_at = w.available_at - coalesce(g.priority_s, 0) * interval '1 second'
    FROM g WHERE w.run_id = g.run_id AND w.step_id = 'step'
    RETURNING 1
), start_timers AS (
    INSERT INTO work (run_id, step_id, available_at)
    SELECT g.run_id, 'timeout:start', statement_timestamp() + $10::interval + g.start_s * interval '1 second'
    FROM g WHERE g.start_s IS NOT NULL
    ON CONFLICT (run_id, step_id) DO NOTHING
)
SELECT count(*) AS gated FROM gated;

-- name: runs_waiting :many
-- params: run_ids, clock_offset
-- nullable: label, in_flight, lim, until
-- Why the runs $1 wait, for those that wait on flow control: a slot of a concurrency key (its label, the
-- leases held under it and the call's limit), or a throttle (its label and the start it allows, later than
-- statement_timestamp() + $2, the clock offset).
SELECT w.run_id, w.waiting, k.label, k.in_flight,
       w.concurrency_limits[array_position(w.concurrency_keys, w.waiting_key)] AS lim,
       CASE WHEN w.waiting = 'throttled' THEN w.available_at END AS until
FROM work w
LEFT JOIN flow_keys k ON k.key = w.waiting_key
WHERE w.run_id = ANY($1::uuid[])
  AND (w.waiting = 'concurrency'
       OR (w.waiting = 'throttled' AND w.available_at > statement_timestamp() + $2::interval))
ORDER BY w.run_id, w.id;

-- name: expire_run :value
-- params: work_id, lease_token, run_id
-- A timer of timeouts ran out (the claimed row $1 with lease token $2, of run $3): for 'timeout:start' the
-- run is cancelled when it is still Queued, for 'timeout:finish' when it has not ended; the timer is
-- dropped either way. Answers whether the run is to be cancelled (the caller cancels it, as a cancel from
-- the API does, in the same transaction).
WITH timer AS (
    DELETE FROM work WHERE id = $1::bigint AND lease_token = $2::uuid RETURNING step_id
)
SELECT EXISTS (
    SELECT 1 FROM runs r, timer t
    WHERE r.id = $3::uuid
      AND (r.status = 'Queued' OR (t.step_id = 'timeout:finish' AND r.status = 'Running'))
) AS expired;

-- name: set_run_error :exec
-- params: run_id, error
-- The error a run that ended shows ($2 JSON), $1 run id.
UPDATE runs SET error = $2::jsonb WHERE id = $1::uuid;

-- Flow control at ingest (admission.py): rate limits, idempotency, singletons, debounces, batches. Only
-- functions that declare one of these run the statements below; ingest of the others is the one statement
-- above. Times are the database's plus $n the clock offset, as everywhere.

-- name: flow_lock_keys :value
-- params: lock_names
-- Serialises the ingests of one function and key (singleton, debounce, batchEvents) across replicas, for the
-- rest of the transaction; the statements that follow see what the previous holder committed. Taken in
-- sorted order, so that two ingests never wait for each other both ways. $1 lock names
SELECT count(pg_advisory_xact_lock(hashtextextended(k.name, 0)))
FROM (SELECT DISTINCT unnest($1::text[]) AS name ORDER BY 1) AS k;

-- name: flow_rate_limit :many
-- params: function_ids, keys, event_counts, step_seconds, period_seconds, limits, clock_offset
-- GCRA per function and key, in the key's row (locked by the upsert, so concurrent ingests queue up on it):
-- of $3 events arriving together, the first ones up to what the limit allows are let through, each taking
-- $4 seconds (period / limit) of the $5 second period; a key seen for the first time lets $6 (the limit)
-- through. $1 function ids, $2 keys, $7 clock offset. Answers how many events of each key were let through.
INSERT INTO rate_limits AS rl (function_id, key, tat, step_s, period_s, requested, admitted)
SELECT q.function_id, q.key,
       statement_timestamp() + $7::interval + least(q.n, q.lim) * q.step_s * interval '1 second',
       q.step_s, q.period_s, q.n, least(q.n, q.lim)
FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::float8[], $6::int[])
     AS q (function_id, key, n, step_s, period_s, lim)
ON CONFLICT (function_id, key) DO UPDATE SET
    step_s = EXCLUDED.step_s, period_s = EXCLUDED.period_s, requested = EXCLUDED.requested,
    admitted = least(EXCLUDED.requested, greatest(0, floor(
        (EXCLUDED.period_s - greatest(0, extract(epoch FROM rl.tat - (statement_timestamp() + $7::interval))))
        / EXCLUDED.step_s + 1e-9)))::int,
    tat = greatest(rl.tat, statement_timestamp() + $7::interval)
          + least(EXCLUDED.requested, greatest(0, floor(
                (EXCLUDED.period_s - greatest(0, extract(epoch FROM rl.tat - (statement_timestamp() + $7::interval))))
                / EXCLUDED.step_s + 1e-9)))::int * EXCLUDED.step_s * interval '1 second'
RETURNING function_id, key, admitted;

-- name: flow_idempotency :many
-- params: function_ids, keys, event_ids, clock_offset
-- Takes each idempotency key (one per function and key: the caller keeps the first event of each) unless a
-- run took it in the last 24 hours. $1 function ids, $2 keys, $3 event ids, $4 clock offset. Answers the
-- keys taken.
WITH clock AS (
    SELECT statement_timestamp() + $4::interval AS now
)
INSERT INTO idempotency_keys AS k (function_id, key, event_id, expires_at)
SELECT i.function_id, i.key, i.event_id, c.now + interval '24 hours'
FROM unnest($1::text[], $2::text[], $3::text[]) AS i (function_id, key, event_id) CROSS JOIN clock c
ON CONFLICT (function_id, key) DO UPDATE SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= EXCLUDED.expires_at - interval '24 hours'
RETURNING function_id, key;

-- name: flow_singletons :many
-- params: function_ids, keys
-- The runs not yet ended that hold the singleton keys $1 (function ids), $2 (keys); read under their locks.
SELECT s.function_id, s.key, s.run_id
FROM singletons s JOIN runs r ON r.id = s.run_id
WHERE (s.function_id, s.key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
  AND r.status IN ('Queued', 'Running');

-- name: flow_debounces :many
-- params: function_ids, keys
-- The pending debounced runs of keys $1 (function ids), $2 (keys), with their first event's time; read
-- under their locks.
SELECT d.function_id, d.key, d.run_id, d.first_at
FROM debounces d
WHERE (d.function_id, d.key) IN (SELECT * FROM unnest($1::text[], $2::text[]));

-- name: flow_debounce_extend :many
-- params: run_ids, event_ids, delay_seconds, deadlines, clock_offset
-- A new event for a pending debounced run: the run takes it as its event and its first call is pushed to
-- $3 seconds from now, but not past $4 (the first event's time plus the timeout, or null). Only a run whose
-- first call has not been claimed moves; the run's row is locked before its work row (the lock order), and
-- a claim that holds the work row leaves the run as it was. $1 run ids, $2 event ids, $5 clock offset.
-- Answers the runs moved.
WITH clock AS (
    SELECT statement_timestamp() + $5::interval AS now
), req AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::timestamptz[])
             AS d (run_id, event_id, period_s, deadline)
), locked AS (
    SELECT r.id FROM runs r WHERE r.id IN (SELECT run_id FROM req) AND r.status = 'Queued'
    FOR NO KEY UPDATE
), moved AS (
    UPDATE work w SET available_at = least(c.now + req.period_s * interval '1 second',
                                           coalesce(req.deadline, 'infinity'))
    FROM req, clock c
    WHERE w.run_id = req.run_id AND w.run_id IN (SELECT id FROM locked) AND w.step_id = 'step'
      AND w.lease_token IS NULL AND w.attempt = 0
    RETURNING w.run_id, w.available_at
), switched AS (
    UPDATE runs r SET event_id = req.event_id FROM moved JOIN req ON req.run_id = moved.run_id
    WHERE r.id = moved.run_id
)
SELECT run_id, available_at FROM moved;

-- name: flow_set_debounces :exec
-- params: function_ids, keys, run_ids, clock_offset
-- The new pending runs of keys: $1 function ids, $2 keys, $3 run ids, $4 clock offset (first_at is now).
INSERT INTO debounces (function_id, key, run_id, first_at)
SELECT d.function_id, d.key, d.run_id, statement_timestamp() + $4::interval
FROM unnest($1::text[], $2::text[], $3::uuid[]) AS d (function_id, key, run_id)
ON CONFLICT (function_id, key) DO UPDATE SET run_id = EXCLUDED.run_id, first_at = EXCLUDED.first_at;

-- name: flow_batches :many
-- params: function_ids, keys
-- The open batches of keys $1 (function ids), $2 (keys); read under their locks.
SELECT b.function_id, b.key, b.run_id, b.size, b.max_size
FROM batches b
WHERE (b.function_id, b.key) IN (SELECT * FROM unnest($1::text[], $2::text[]));

-- name: flow_batch_append :many
-- params: event_run_ids, event_ids, event_positions, run_ids, is_full
-- nullable: is_full
-- Adds events to open batches whose run has not been called yet: $1 run ids, $2 event ids, $3 positions
-- (one row per event), $4 the runs, $5 whether each is full now (its first call is then due at once). The
-- work row is written either way, so that a claim that raced this append reads the row as written here and
-- its batch (read after the claim) includes these events. Answers the runs appended to.
WITH req AS (
    SELECT * FROM unnest($4::uuid[], $5::bool[]) AS f (run_id, is_full)
), locked AS (
    SELECT r.id FROM runs r WHERE r.id IN (SELECT run_id FROM req) AND r.status = 'Queued'
    FOR NO KEY UPDATE
), opened AS (
    UPDATE work w SET available_at = CASE WHEN req.is_full THEN statement_timestamp() ELSE w.available_at END
    FROM req
    WHERE w.run_id = req.run_id AND w.run_id IN (SELECT id FROM locked) AND w.step_id = 'step'
      AND w.lease_token IS NULL AND w.attempt = 0
    RETURNING w.run_id, req.is_full
), added AS (
    INSERT INTO batch_events (run_id, position, event_id)
    SELECT e.run_id, e.position, e.event_id
    FROM unnest($1::uuid[], $2::text[], $3::int[]) AS e (run_id, event_id, position)
    WHERE e.run_id IN (SELECT run_id FROM opened)
)
SELECT o.run_id, o.is_full,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM opened WHERE is_full LIMIT 1) AS n)
           AS notified
FROM opened o;

-- name: flow_set_batches :exec
-- params: function_ids, keys, run_ids, sizes, max_sizes
-- The open batch of each key after an ingest: $1 function ids, $2 keys, $3 run ids (null: no open batch),
-- $4 sizes, $5 max sizes.
WITH gone AS (
    DELETE FROM batches b USING unnest($1::text[], $2::text[], $3::uuid[]) AS s (function_id, key, run_id)
    WHERE b.function_id = s.function_id AND b.key = s.key AND s.run_id IS NULL
)
INSERT INTO batches (function_id, key, run_id, size, max_size)
SELECT s.function_id, s.key, s.run_id, s.size, s.max_size
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::int[], $5::int[]) AS s (function_id, key, run_id, size, max_size)
WHERE s.run_id IS NOT NULL
ON CONFLICT (function_id, key) DO UPDATE SET run_id = EXCLUDED.run_id, size = EXCLUDED.size,
                                             max_size = EXCLUDED.max_size;

-- name: flow_start_runs :one
-- params: run_ids, event_ids, function_ids, function_names, urls, max_attempts, delay_seconds, batched, clock_offset, batch_run_ids, batch_event_ids, batch_positions
-- The runs flow control lets start, for events stored by this transaction: each run's first call is due
-- $7 seconds from now (debounce, a batch's timeout), or when null at once (or at the event's ts when that
-- lies ahead). $1 run ids, $2 event ids, $3 function ids, $4 function names, $5 urls, $6 max attempts,
-- $8 batched, $9 clock offset; the events of new batches: $10 run ids, $11 event ids, $12 positions.
WITH clock AS (
    SELECT statement_timestamp() + $9::interval AS now
), planned AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[],
                         $8::bool[])
             AS r (run_id, event_id, function_id, function_name, url, max_attempts, delay_s, batched)
), new_runs AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at, batched)
    SELECT p.run_id, p.event_id, p.function_id, p.function_name, p.url, p.max_attempts, 'Queued', c.now,
           p.batched
    FROM planned p CROSS JOIN clock c
    RETURNING id
), new_work AS (
    INSERT INTO work (run_id, step_id, available_at)
    SELECT p.run_id, 'step',
           CASE WHEN p.delay_s IS NOT NULL THEN c.now + p.delay_s * interval '1 second'
                WHEN to_timestamp(e.ts / 1000.0) > c.now THEN to_timestamp(e.ts / 1000.0)
                ELSE statement_timestamp() END
    FROM planned p JOIN events e ON e.id = p.event_id CROSS JOIN clock c
    WHERE p.run_id IN (SELECT id FROM new_runs)
    RETURNING available_at
), members AS (
    INSERT INTO batch_events (run_id, position, event_id)
    SELECT b.run_id, b.position, b.event_id
    FROM unnest($10::uuid[], $11::text[], $12::int[]) AS b (run_id, event_id, position)
    WHERE b.run_id IN (SELECT id FROM new_runs)
)
SELECT (SELECT count(*) FROM new_work) AS runs_created,
       (SELECT count(*) FROM (SELECT pg_notify('stepline_work', '') FROM new_work
                              WHERE available_at <= (SELECT now FROM clock) LIMIT 1) AS n) AS notified;

-- name: flow_set_singletons :exec
-- params: function_ids, keys, run_ids
-- The runs that now hold singleton keys: $1 function ids, $2 keys, $3 run ids.
INSERT INTO singletons (function_id, key, run_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
ON CONFLICT (function_id, key) DO UPDATE SET run_id = EXCLUDED.run_id;

-- name: flow_skip_events :exec
-- params: event_ids, function_ids, reasons, clock_offset
-- Events that started no run of a function, and why: $1 event ids, $2 function ids, $3 reasons, $4 clock
-- offset.
INSERT INTO skipped_events (event_id, function_id, reason, skipped_at)
SELECT s.event_id, s.function_id, s.reason, statement_timestamp() + $4::interval
FROM unnest($1::text[], $2::text[], $3::text[]) AS s (event_id, function_id, reason)
ON CONFLICT (event_id, function_id) DO NOTHING;

-- name: batch_events_of_runs :many
-- params: run_ids
-- The events of batch runs $1 in order, as calls send them; read after the claim that leased their calls.
SELECT b.run_id, jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'id', e.id, 'name', e.name, 'data', e.data, 'ts', e.ts, 'user', e."user", 'v', e.v))
       ORDER BY b.position) AS events
FROM batch_events b JOIN events e ON e.id = b.event_id
WHERE b.run_id = ANY($1::uuid[])
GROUP BY b.run_id;

-- name: skipped_of_events :many
-- params: event_ids
-- Why events $1 started no run of some functions.
SELECT event_id, function_id, reason, skipped_at FROM skipped_events
WHERE event_id = ANY($1::text[]) ORDER BY skipped_at, function_id;

-- name: runs_flow_wait :many
-- params: run_ids
-- nullable: batch_max
-- Why the Queued runs $1 wait at ingest's flow control: debounced (until their first call is due) or
-- batching (the open batch's events of its max size). Only the runs that are either are answered.
SELECT w.run_id, w.available_at AS due, d.run_id IS NOT NULL AS debounced, b.max_size AS batch_max,
       (SELECT count(*) FROM batch_events e WHERE e.run_id = w.run_id) AS batch_events
FROM work w
LEFT JOIN debounces d ON d.run_id = w.run_id
LEFT JOIN batches b ON b.run_id = w.run_id
WHERE w.run_id = ANY($1::uuid[]) AND w.step_id = 'step' AND w.lease_token IS NULL AND w.attempt = 0
  AND (d.run_id IS NOT NULL OR b.run_id IS NOT NULL);

-- name: prune_flow_state :value
-- params: clock_offset
-- Flow-control state that decides nothing any more: rate limits whose period has passed, idempotency keys
-- past their 24 hours, singletons, debounces and batches whose run is no longer Queued (or Running, for
-- singletons). A row is deleted only when its run is seen ended: a row an ingest is writing names a run this
-- statement cannot see yet, and stays. $1 clock offset.
WITH rates AS (
    DELETE FROM rate_limits WHERE tat < statement_timestamp() + $1::interval RETURNING 1
), keys AS (
    DELETE FROM idempotency_keys WHERE expires_at <= statement_timestamp() + $1::interval RETURNING 1
), single AS (
    DELETE FROM singletons s
    WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = s.run_id AND r.status NOT IN ('Queued', 'Running'))
    RETURNING 1
), debounced AS (
    DELETE FROM debounces d
    WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = d.run_id AND r.status <> 'Queued') RETURNING 1
), batched AS (
    DELETE FROM batches b
    WHERE EXISTS (SELECT 1 FROM runs r WHERE r.id = b.run_id AND r.status <> 'Queued') RETURNING 1
)
SELECT (SELECT count(*) FROM rates) + (SELECT count(*) FROM keys) + (SELECT count(*) FROM single)
       + (SELECT count(*) FROM debounced) + (SELECT count(*) FROM batched) AS pruned;

-- Dashboard sessions (dashboard/auth.py): a random cookie per sign-in, kept as its sha256

-- name: open_session :exec
-- params: session_sha256, lifetime, role, namespace?, token_sha256?
-- $1 sha256 hex of the session cookie, $2 how long it lasts, $3 role, $4 namespace (null: the cluster),
-- $5 sha256 hex of the token signed in with (null: the cluster admin token)
INSERT INTO dashboard_sessions (id_sha256, expires_at, role, namespace, token_sha256)
VALUES ($1::text, now() + $2::interval, $3::text, $4::text, $5::text);

-- name: session_is_open :one
-- params: session_sha256
-- nullable: namespace
-- $1 sha256 hex of the cookie: a row when the session exists and has not expired (by the database's clock)
-- and its token (if one of api_tokens) is still published with the same role and namespace (a changed
-- grant ends the session: the browser signs in again); answers its role and namespace
SELECT s.role, s.namespace FROM dashboard_sessions s
WHERE s.id_sha256 = $1::text AND s.expires_at > now()
  AND (s.token_sha256 IS NULL OR EXISTS (
      SELECT 1 FROM api_tokens t
      WHERE t.sha256 = s.token_sha256 AND t.role = s.role AND t.namespace IS NOT DISTINCT FROM s.namespace));

-- name: close_session :exec
-- params: session_sha256
-- $1 sha256 hex of the cookie
DELETE FROM dashboard_sessions WHERE id_sha256 = $1::text;

-- name: prune_sessions :exec
DELETE FROM dashboard_sessions WHERE expires_at <= now();

-- Event keys of namespaces (the operator publishes them from labelled Secrets; the gateways read them)

-- name: load_event_keys :many
SELECT sha256, namespace FROM event_keys;

-- name: replace_event_keys :value
-- params: source, namespace, key_hashes
-- The keys of one Secret: $1 source, $2 namespace, $3 sha256 hex of each key. Answers whether anything
-- changed (then the caller notifies).
WITH gone AS (
    DELETE FROM event_keys WHERE source = $1::text AND NOT (sha256 = ANY($3::text[])) RETURNING 1
), added AS (
    INSERT INTO event_keys (sha256, namespace, source)
    SELECT k, $2::text, $1::text FROM unnest($3::text[]) AS k
    ON CONFLICT (sha256, namespace) DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added) AS changed;

-- Signing keys of namespaces (the operator publishes them sealed from labelled Secrets; the gateways open them)

-- name: load_signing_keys :many
-- nullable: previous
SELECT namespace, current, previous FROM signing_keys;

-- name: replace_signing_key :value
-- params: namespace, source, sealed_current, sealed_previous?, fingerprint
-- nullable: outcome
-- The keys of Secret $2 (source) for namespace $1: $3 the sealed current key, $4 the sealed previous one
-- (null: none), $5 their fingerprint. A namespace's keys come from one Secret: when another Secret holds
-- it, nothing changes. Answers 'changed', 'same' or the source that holds the namespace.
WITH held AS (
    SELECT source, fingerprint FROM signing_keys WHERE namespace = $1::text
), written AS (
    INSERT INTO signing_keys (namespace, source, current, previous, fingerprint)
    VALUES ($1::text, $2::text, $3::text, $4::text, $5::text)
    ON CONFLICT (namespace) DO UPDATE
        SET current = EXCLUDED.current, previous = EXCLUDED.previous, fingerprint = EXCLUDED.fingerprint,
            updated_at = now()
    WHERE signing_keys.source = EXCLUDED.source AND signing_keys.fingerprint <> EXCLUDED.fingerprint
    RETURNING 1
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM written) THEN 'changed'
            WHEN (SELECT source FROM held) = $2::text THEN 'same'
            ELSE (SELECT source FROM held) END AS outcome;

-- name: remove_signing_key :exec
-- params: source
-- Secret $1 (source) is gone or no longer labelled: its keys are removed; answers how many rows went
DELETE FROM signing_keys WHERE source = $1::text;

-- name: load_api_tokens :many
-- nullable: namespace
SELECT sha256, namespace, role FROM api_tokens;

-- name: replace_api_tokens :value
-- params: source, namespace?, role, token_hashes
-- The tokens of one Secret: $1 source, $2 namespace (null: the cluster), $3 role, $4 sha256 hex of each
-- token. Answers whether anything changed (then the caller notifies).
WITH gone AS (
    DELETE FROM api_tokens
    WHERE source = $1::text AND NOT (sha256 = ANY($4::text[]))
    RETURNING 1
), added AS (
    INSERT INTO api_tokens (sha256, namespace, role, source)
    SELECT k, $2::text, $3::text, $1::text FROM unnest($4::text[]) AS k
    ON CONFLICT (sha256, source) DO UPDATE SET namespace = EXCLUDED.namespace, role = EXCLUDED.role,
        updated_at = now()
    WHERE api_tokens.namespace IS DISTINCT FROM EXCLUDED.namespace OR api_tokens.role <> EXCLUDED.role
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM added) AS changed;
