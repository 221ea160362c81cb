-- A correction kept ahead of its certificate keeps when it was made (its envelope's time, the
-- issuer's own clock signed with the event), so that, when the certificate comes, the kept
-- corrections of both kinds (its own here, its holder's name in name_corrections) apply in the
-- order they were made: the one made last names her, whichever kind it is and whichever came first.
-- Rows kept before this migration have only the time they came, an upper bound of when they were made.
ALTER TABLE corrections_ahead ADD COLUMN corrected_at timestamptz;
UPDATE corrections_ahead SET corrected_at = recorded_at;
ALTER TABLE corrections_ahead ALTER COLUMN corrected_at SET NOT NULL;
