-- The event log per namespace: each event keeps the namespaces it was sent into (a namespace's event key,
-- a Webhook of the namespace, a namespace's API token, or a run of the namespace emitting it); null when it
-- was sent to every namespace (a cluster key, a cluster token). A namespace's token lists the events of its
-- namespace through the partial index, which events sent to every namespace do not enter.
ALTER TABLE events ADD COLUMN namespaces text[];
CREATE INDEX events_namespaces ON events USING gin (namespaces) WHERE namespaces IS NOT NULL;

-- The runs list of one namespace (a namespace's token, or the dashboard's namespace selector): newest first
-- through the namespace of the run's function id, the same expression as functions.namespace.
CREATE INDEX runs_namespace_created ON runs
    ((CASE WHEN strpos(function_id, '/') > 0 THEN split_part(function_id, '/', 1) ELSE 'default' END),
     created_at DESC, id DESC);
