-- The registry's records. Rows recorded here have source_division = jurisdiction; rows applied
-- from a counterpart's notification carry that counterpart's division and the source event id.

CREATE TABLE persons (
    jurisdiction        text NOT NULL,
    id_number           text NOT NULL,
    subject             text NOT NULL,
    name                text NOT NULL,
    sex                 char(1) NOT NULL CHECK (sex IN ('F', 'M')),
    birth_date          date NOT NULL,
    hukou_division      text NOT NULL,
    residence_division  text NOT NULL,
    source_division     text NOT NULL,
    source_event_id     uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction, id_number)
);
CREATE INDEX persons_subject ON persons (subject);

CREATE TABLE migrations (
    id                uuid PRIMARY KEY,
    jurisdiction      text NOT NULL,
    id_number         text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('departed', 'arrived', 'returned')),
    from_division     text NOT NULL,
    to_division       text NOT NULL CHECK (to_division <> from_division),
    migration_date    date NOT NULL,
    source_division   text NOT NULL,
    source_event_id   uuid,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX migrations_person ON migrations (jurisdiction, id_number, migration_date, created_at);

CREATE TABLE marriages (
    id                  uuid PRIMARY KEY,
    jurisdiction        text NOT NULL,
    spouse_a_id_number  text NOT NULL,
    spouse_b_id_number  text NOT NULL CHECK (spouse_b_id_number <> spouse_a_id_number),
    marriage_date       date NOT NULL,
    dissolution_date    date,
    dissolution_reason  text,
    source_division     text NOT NULL,
    source_event_id     uuid,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX marriages_a ON marriages (jurisdiction, spouse_a_id_number);
CREATE INDEX marriages_b ON marriages (jurisdiction, spouse_b_id_number);

CREATE TABLE births (
    id                          uuid PRIMARY KEY,
    jurisdiction                text NOT NULL,
    medical_certificate_number  text NOT NULL,
    child_name                  text NOT NULL,
    child_sex                   char(1) NOT NULL CHECK (child_sex IN ('F', 'M')),
    child_birth_date            date NOT NULL,
    child_id_number             text,
    mother_id_number            text NOT NULL,
    father_id_number            text,
    birth_order                 int NOT NULL CHECK (birth_order >= 1),
    birth_division              text NOT NULL,
    source_division             text NOT NULL,
    source_event_id             uuid,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    -- one birth per birth medical certificate (出生医学证明) in each jurisdiction's records
    UNIQUE (jurisdiction, medical_certificate_number)
);
CREATE INDEX births_mother ON births (jurisdiction, mother_id_number, child_birth_date);
CREATE INDEX births_father ON births (jurisdiction, father_id_number) WHERE father_id_number IS NOT NULL;

CREATE TABLE certificates (
    number                text PRIMARY KEY,
    jurisdiction          text NOT NULL,
    holder_id_number      text NOT NULL,
    holder_name           text NOT NULL,
    marital_status        text NOT NULL,
    children_birth_dates  date[] NOT NULL DEFAULT '{}',
    issued_on             date NOT NULL,
    valid_until           date NOT NULL CHECK (valid_until > issued_on),
    key_id                text NOT NULL,
    status_index          int NOT NULL,
    token                 text NOT NULL,
    revoked_on            date,
    revocation_reason     text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (jurisdiction, status_index)
);
CREATE INDEX certificates_holder ON certificates (jurisdiction, holder_id_number);

-- Next status-list index per issuing jurisdiction (row-locked while a certificate is issued).
CREATE TABLE status_counters (
    jurisdiction  text PRIMARY KEY,
    next_index    int NOT NULL
);

-- Ed25519 signing keys per jurisdiction; private keys wrapped with KEY_ENCRYPTION_KEY (AES-GCM).
CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    jurisdiction   text NOT NULL,
    public_key     bytea NOT NULL,
    private_key    bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    expires_at     timestamptz
);
CREATE UNIQUE INDEX signing_keys_active ON signing_keys (jurisdiction) WHERE retired_at IS NULL;
