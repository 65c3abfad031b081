-- Checkpointing: services run several steps in one call and report each step's result as it goes.

-- The function's checkpoint settings from its SDK's sync, as sent: {"batch_steps", "batch_interval",
-- "max_runtime"}; null when the SDK sent none.
ALTER TABLE functions ADD COLUMN checkpoint jsonb;

-- Whether a step's result came through the checkpoint API (POST /v1/checkpoint/{run}/async) rather than
-- in the answer to a call.
ALTER TABLE steps ADD COLUMN checkpointed boolean NOT NULL DEFAULT false;
