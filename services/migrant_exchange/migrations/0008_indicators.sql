-- The exchange's own projection of certificate.lifecycle.v1, enough for the issuance rate (办证率).
-- Keyed by certificate number; the holder is the pseudonymous subject key, never an identity number.
CREATE TABLE certificate_stats (
    certificate_number  text PRIMARY KEY,
    issuer              text NOT NULL,
    subject             text NOT NULL,
    issued_at           timestamptz,          -- event time of certificate.issued.v1
    valid_until         date,
    revoked_at          timestamptz           -- event time of certificate.revoked.v1
);
CREATE INDEX certificate_stats_issuer ON certificate_stats (issuer, issued_at);
CREATE INDEX certificate_stats_subject ON certificate_stats (subject);

-- Notifications are counted by state every few seconds for the dashboard and the metrics.
CREATE INDEX notifications_open ON notifications (created_at) WHERE state IN ('pending', 'overdue');
