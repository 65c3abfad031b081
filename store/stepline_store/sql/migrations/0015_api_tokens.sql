-- API tokens with a role and a scope: Secrets labelled stepline.dev/api-token=true, whose values the operator
-- publishes as sha256 hashes (never the tokens). The cluster admin token of the chart's values is not here.
CREATE TABLE api_tokens (
    sha256     text NOT NULL,
    namespace  text,                               -- the namespace the token sees; null: every namespace
    role       text NOT NULL CHECK (role IN ('viewer', 'operator')),
    source     text NOT NULL,                      -- "kubernetes:<namespace>/<secret name>"
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, source)
);
CREATE INDEX api_tokens_source ON api_tokens (source);

-- A browser's session keeps what its token allowed at sign-in; a session signed in with a token of
-- api_tokens ends when that token is revoked (token_sha256 null: the cluster admin token).
ALTER TABLE dashboard_sessions
    ADD COLUMN role text NOT NULL DEFAULT 'operator' CHECK (role IN ('viewer', 'operator')),
    ADD COLUMN namespace text,
    ADD COLUMN token_sha256 text;
