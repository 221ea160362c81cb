-- Tables every service has: the outbox, the inbox, idempotency keys, clients, dead letters, audit.

-- Transactional outbox: written in the same transaction as the business rows, published by the relay.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    event_type    text NOT NULL,
    topic         text NOT NULL,
    key           text NOT NULL,
    value         bytea NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Per-subject sequence of the events this database produced, per producing jurisdiction.
CREATE TABLE subject_sequences (
    subject        text NOT NULL,
    source         text NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (subject, source)
);

-- Inbox: ids of the events a consumer applied, written with the effect.
CREATE TABLE inbox (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Idempotency-Key: the first answer to a POST, replayed byte for byte on a retry.
CREATE TABLE idempotency_keys (
    client_id     text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   int NOT NULL,
    body          bytea NOT NULL,
    content_type  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, key)
);

-- Registered API clients; the bearer secret is stored only as a SHA-256 hash.
CREATE TABLE clients (
    client_id     text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9_-]{2,63}$'),
    kind          text NOT NULL CHECK (kind IN ('jurisdiction', 'kiosk', 'department', 'operator')),
    jurisdiction  text CHECK (jurisdiction ~ '^\d{6}$'),
    scopes        text[] NOT NULL DEFAULT '{}',
    secret_hash   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE FUNCTION notify_clients_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('clients_changed', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION notify_clients_changed();

-- Messages a consumer could not parse or apply; also published to <topic>.dlq through the outbox.
CREATE TABLE dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     text NOT NULL,
    topic        text NOT NULL,
    partition    int NOT NULL,
    "offset"     bigint NOT NULL,
    key          text,
    value        bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at  timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE replayed_at IS NULL;

-- Append-only, hash-chained audit of disclosures and verifications.
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    client_id  text NOT NULL,
    action     text NOT NULL,
    purpose    text,
    subject    text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject, seq);
