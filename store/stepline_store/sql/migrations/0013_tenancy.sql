-- Tenancy and sign-in: dashboard sessions kept server-side, so that each sign-in gets its own random
-- session that expires and ends at sign-out on every replica.

-- A browser's session: only the sha256 of its cookie is kept (the cookie itself never reaches the store).
CREATE TABLE dashboard_sessions (
    id_sha256 text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
