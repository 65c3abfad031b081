-- An event's version (the sender's `v`, e.g. "2024-01-01.1"): stored as sent and passed to functions.
ALTER TABLE events ADD COLUMN v text;
