-- Webhooks: a provider's signed requests turned into events, and the log of recent deliveries.

-- One row per published Webhook (from the operator or from manifest files). The gateways load them all,
-- reloaded on NOTIFY stepline_webhooks. The secrets are sealed (Fernet tokens under STEPLINE_SECRETS_KEY):
-- only a process holding that key can read them.
CREATE TABLE webhooks (
    namespace    text NOT NULL,
    name         text NOT NULL,
    scheme       text NOT NULL
                 CHECK (scheme IN ('github', 'stripe', 'slack', 'standardWebhooks', 'hmac', 'token', 'none')),
    options      jsonb NOT NULL DEFAULT '{}',     -- the scheme's settings: {"tolerance_s"}, {"header", ...}
    secrets      jsonb NOT NULL DEFAULT '[]',     -- sealed secrets: the current one, then the previous one
    transform    text,                            -- CEL; null: the default transform
    source       text NOT NULL,                   -- "kubernetes:<ns>/<name>" or "manifest"
    fingerprint  text NOT NULL,                   -- keyed digest of what was published: unchanged, no write
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name)
);

-- What each request to a webhook came to: accepted (with the events it gave) or refused (and why). Kept for
-- the retention period and at most a bounded number per webhook; never holds a body or a header.
CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    namespace    text NOT NULL,
    name         text NOT NULL,
    received_at  timestamptz NOT NULL,
    accepted     boolean NOT NULL,
    status       integer NOT NULL,                -- the HTTP status answered
    reason       text NOT NULL,
    event_ids    text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (received_at DESC, id DESC);
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (namespace, name, received_at DESC, id DESC);
