-- The subject-access log lists the events published about a person: find them by subject key.
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key, id);
