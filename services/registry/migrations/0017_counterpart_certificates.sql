-- Certificates another jurisdiction issued to a person this registry shares with it, as the
-- issuer's certificate.lifecycle notifications told us: a copy, so that reconciliation can
-- compare and repair certificates like every other record kind. The issuer's register
-- (`certificates`) stays authoritative, and verification keeps its own read model.
CREATE TABLE IF NOT EXISTS counterpart_certificates (
    jurisdiction      text NOT NULL,
    number            text NOT NULL,
    holder_id_number  text NOT NULL,
    issuer            text NOT NULL,
    issued_on         date NOT NULL,
    valid_until       date NOT NULL CHECK (valid_until > issued_on),
    revoked_on        date,
    source_division   text NOT NULL,
    source_event_id   uuid,
    event_id          uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction, number)
);
CREATE INDEX IF NOT EXISTS counterpart_certificates_holder ON counterpart_certificates (jurisdiction, holder_id_number);
