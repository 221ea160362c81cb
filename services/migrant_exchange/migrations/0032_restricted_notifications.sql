-- Whether a notification carries a restricted event (shared.sensitivity.is_restricted): a pregnancy
-- type, or a correction of a pregnancy (record.corrected.v1 whose record_type is pregnancy). The
-- operator's listing names such a notification by the neutral category, as it does a pregnancy's
-- (entrypoints/views.py); the type alone cannot tell a correction's record, and its payload, which
-- can, is purged once answered. Rows that still hold their payload are marked here; a pregnancy
-- type is read as restricted by its type as before.
ALTER TABLE notifications ADD COLUMN restricted boolean NOT NULL DEFAULT false;
UPDATE notifications SET restricted = true
WHERE event_type LIKE 'record.corrected.%' AND payload->>'record_type' = 'pregnancy';
