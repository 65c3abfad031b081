-- Tenancy and sign-in: dashboard sessions kept server-side, so that each sign-in gets its own random
-- session that expires and ends at sign-out on every replica.

-- A browser's session: only the sha256 of its cookie is kept (the cookie itself never reaches the store).
CREATE TABLE dashboard_sessions (
    id_sha256 text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

-- A function's identity is namespace + app + function id: the id of a function outside the namespace
-- `default` is `<namespace>/<app>-<function>` (stepline_store/identity.py), its namespace kept beside it.
ALTER TABLE functions ADD COLUMN namespace text NOT NULL
    GENERATED ALWAYS AS (CASE WHEN strpos(id, '/') > 0 THEN split_part(id, '/', 1) ELSE 'default' END) STORED;
CREATE INDEX functions_namespace ON functions (namespace);

-- Event keys of a namespace: Secrets labelled stepline.dev/event-key=true, whose values the operator
-- publishes as sha256 hashes (never the keys). An event sent with one reaches only that namespace.
CREATE TABLE event_keys (
    sha256     text NOT NULL,
    namespace  text NOT NULL,
    source     text NOT NULL,                     -- "kubernetes:<namespace>/<secret name>"
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, namespace)
);
CREATE INDEX event_keys_source ON event_keys (source);
