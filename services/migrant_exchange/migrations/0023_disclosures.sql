-- Issue 17: the whole subject-access log and the verification rate (验证率).

-- The first time the addressee picked a notification's payload up over REST: that pick-up is a
-- disclosure the person's registries are told of, once.
ALTER TABLE notifications ADD COLUMN fetched_at timestamptz;

-- The exchange's projection of verification's disclosure events (certificate.verified): which
-- certificate was checked, by a client of which jurisdiction, when. No subject key, no person.
CREATE TABLE verification_stats (
    disclosure_id       uuid PRIMARY KEY,
    certificate_number  text NOT NULL,
    issuer              text NOT NULL,
    division            text,                 -- the checking client's home jurisdiction
    result              text NOT NULL,
    verified_at         timestamptz NOT NULL
);
CREATE INDEX verification_stats_division ON verification_stats (division, verified_at);
CREATE INDEX verification_stats_certificate ON verification_stats (certificate_number, verified_at);
