-- The verification read model, built from certificate.lifecycle.v1. Holders are kept as
-- pseudonymous subject keys: a presented identity number is keyed the same way and compared.
CREATE TABLE certificates (
    number             text PRIMARY KEY,
    issuer             text NOT NULL,
    holder_subject     text NOT NULL,
    holder_name        text NOT NULL,
    marital_status     text NOT NULL,
    children_count     int NOT NULL,
    issued_on          date NOT NULL,
    valid_until        date NOT NULL,
    key_id             text NOT NULL,
    status_index       int NOT NULL,
    token              text NOT NULL,
    revoked_on         date,
    revocation_reason  text,
    source_event_id    uuid NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_issuer_status ON certificates (issuer, status_index);
