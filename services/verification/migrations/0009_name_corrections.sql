-- An issuer's correction of a holder's name (record.corrected.v1, record type person) changes the
-- name on the certificates it issued her. Corrections travel on vital.correction.v1, certificates
-- on certificate.lifecycle.v1, so a certificate issued before the correction, under the old name,
-- can arrive after it (the consumer, a rebuild from the broker). The correction is kept here, the
-- latest one per holder and issuer (she may hold several of its certificates, none seen yet), and
-- applied to a certificate of that issuer for her that arrives later if the certificate was made
-- before the correction (both envelope times are the issuer's own, signed with the event). One
-- row per holder and issuer, purged after RETENTION_CORRECTION_AHEAD_DAYS as corrections_ahead.
CREATE TABLE name_corrections (
    holder_subject  text NOT NULL,         -- the holder's pseudonymous key (certificates.holder_subject)
    corrector       text NOT NULL,         -- the correcting jurisdiction: only its certificates change
    holder_name     text NOT NULL,         -- the corrected name
    corrected_at    timestamptz NOT NULL,  -- the correction's envelope time
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (holder_subject, corrector)
);

-- A name correction changes the certificates its issuer holds for her (correct_holder_name): found
-- by her key, not by reading every certificate.
CREATE INDEX IF NOT EXISTS certificates_holder ON certificates (holder_subject, issuer);
