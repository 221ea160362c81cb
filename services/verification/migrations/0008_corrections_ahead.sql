-- A certificate's correction that arrives before the certificate (corrections travel on
-- vital.correction.v1, certificates on certificate.lifecycle.v1, so the consumer, and a rebuild
-- reading the broker from the beginning, can meet the correction first) is kept here and applied,
-- in the order it came, when its certificate arrives, as revocations are kept apart.
CREATE TABLE corrections_ahead (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    certificate_number  text NOT NULL,
    corrector           text NOT NULL,   -- the correcting jurisdiction (the issuer it names)
    changes             jsonb NOT NULL,  -- the corrected fields the read model keeps
    recorded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX corrections_ahead_number ON corrections_ahead (certificate_number);
