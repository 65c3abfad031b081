-- Signing keys of namespaces: Secrets labelled stepline.dev/signing-key=true, whose INNGEST_SIGNING_KEY and
-- INNGEST_SIGNING_KEY_FALLBACK the operator publishes sealed with STEPLINE_SECRETS_KEY (never in clear).
-- The gateways open them to sign calls to the namespace's services and to check its apps' answers, syncs
-- and checkpoints. One Secret per namespace: the first published keeps it until it is deleted.
CREATE TABLE signing_keys (
    namespace   text PRIMARY KEY,
    source      text NOT NULL,                      -- "kubernetes:<namespace>/<secret name>"
    current     text NOT NULL,                      -- sealed INNGEST_SIGNING_KEY
    previous    text,                               -- sealed INNGEST_SIGNING_KEY_FALLBACK, during a rotation
    fingerprint text NOT NULL,                      -- Sealer.fingerprint of both: a changed Secret is seen
    updated_at  timestamptz NOT NULL DEFAULT now()
);
