-- Each failed attempt of a step that was tried again, with its error: the history the dashboard shows.
CREATE TABLE step_attempts (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    hash       text NOT NULL,
    attempt    integer NOT NULL,                 -- 1 for the first attempt
    error      jsonb NOT NULL,
    ended_at   timestamptz NOT NULL,
    PRIMARY KEY (run_id, hash, attempt)
);
