-- Poison answers: a call whose lease lapses again and again, with nothing recorded in between, fails its run.

-- Claims in a row that found the call's previous lease lapsed (still set) with no memo recorded since.
ALTER TABLE work ADD COLUMN lost_leases integer NOT NULL DEFAULT 0;
-- The run's memos when the call was last claimed: more at the next claim means the call made progress.
ALTER TABLE work ADD COLUMN claimed_memos integer NOT NULL DEFAULT 0;
