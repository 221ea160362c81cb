-- Each outbox row is written once and updated once (published_at, by the relay). Room left on
-- each page lets the update put the new row version beside the old: PostgreSQL then logs only
-- the bytes that changed (the timestamp) instead of the whole row with its event (~1.5 KB).
ALTER TABLE outbox SET (fillfactor = 50);
