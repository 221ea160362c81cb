-- Issuer public keys, revocations by status index, and the status-list signer of this service.

-- Public keys of the issuing jurisdictions, learned from registries' JWKS URLs or from the
-- public_key_jwk of certificate.issued.v1. A kid is bound to one key for ever: a different key
-- under a known kid is refused, never overwritten.
CREATE TABLE issuer_keys (
    kid           text PRIMARY KEY,
    issuer        text NOT NULL CHECK (issuer ~ '^\d{6}$'),
    public_key    bytea NOT NULL CHECK (length(public_key) = 32),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    expires_at    timestamptz,
    source        text NOT NULL,               -- 'event' or the JWKS URL the key came from
    withdrawn_at  timestamptz,                 -- the registry stopped publishing it
    learned_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX issuer_keys_issuer ON issuer_keys (issuer);

-- Revocations by (issuer, status index): the source of the status lists. Kept apart from
-- certificates so a revocation is honoured even for a certificate this read model never saw.
CREATE TABLE revocations (
    issuer              text NOT NULL,
    status_index        int NOT NULL,
    certificate_number  text NOT NULL,
    revoked_on          date NOT NULL,
    reason              text NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, status_index)
);

-- The key this service signs status lists with (generated here only outside production).
CREATE TABLE service_keys (
    kid          text PRIMARY KEY,
    purpose      text NOT NULL CHECK (purpose = 'status-list'),
    private_key  bytea NOT NULL,
    public_key   bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE certificates ADD COLUMN corrected_at timestamptz;

-- Replay generation of the read model: the consumer group and inbox name carry it, so a
-- rebuild (empty the tables, bump the generation) reads every topic again from the start.
CREATE TABLE projection_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  int NOT NULL DEFAULT 0,
    rebuilt_at  timestamptz
);
INSERT INTO projection_state DEFAULT VALUES;
