-- A step's memo is written once and never again (the replay key is run + hash): a replayed call, a
-- checkpoint post sent twice, the late answer of a call whose lease another gateway took over, a failure
-- reported after a success: none of them changes a recorded step. The rule is kept here, for every
-- statement that writes steps (queries.sql's upserts carry no condition of their own): an UPDATE of a step
-- whose memo is set is skipped, the statement goes on, and its RETURNING leaves the step out (so a caller
-- learns that nothing was recorded, as it did from the conditions this replaces).
CREATE FUNCTION stepline_keep_recorded_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END
$$;

CREATE TRIGGER steps_memo_written_once BEFORE UPDATE ON steps
    FOR EACH ROW WHEN (OLD.memo IS NOT NULL) EXECUTE FUNCTION stepline_keep_recorded_step();
