-- When the attempt that ended a step (or runs it now) began, apart from when the step first began (which
-- orders the steps): a retried step's time is its last attempt's, without the backoff waits before it.
-- Each failed attempt keeps when it began too (null for attempts recorded before this migration).
ALTER TABLE steps ADD COLUMN attempt_started_at timestamptz;
ALTER TABLE step_attempts ADD COLUMN started_at timestamptz;
