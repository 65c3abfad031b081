-- Leases on the database's clock. A claimed call keeps its due time in available_at and its lease end in
-- lease_expires_at, set from the database's now() alone: a replica whose own clock is skewed never judges
-- another replica's lease. The two kinds of claimable rows, due ones and lapsed leases, get an index each,
-- so that a claim (and the wait for the next due row) is an index range scan of the rows it takes.

ALTER TABLE work ADD COLUMN lease_expires_at timestamptz;

-- Rows leased before this migration kept their lease end in available_at.
UPDATE work SET lease_expires_at = available_at WHERE lease_token IS NOT NULL;

-- A leased row without a lease end could never be claimed again: refused.
ALTER TABLE work ADD CONSTRAINT work_lease_has_end CHECK ((lease_token IS NULL) = (lease_expires_at IS NULL));

DROP INDEX work_due;
CREATE INDEX work_due ON work (available_at) WHERE lease_token IS NULL;
CREATE INDEX work_leased ON work (lease_expires_at) WHERE lease_token IS NOT NULL;
