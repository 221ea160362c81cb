-- A revoked issuer key: tokens under it are refused online at once, it leaves the JWKS kiosks
-- download, and the issuer's status list names it. Nothing a registry publishes or an event
-- carries brings it back (learn_key never clears revoked_at).
ALTER TABLE issuer_keys ADD COLUMN revoked_at timestamptz;
ALTER TABLE issuer_keys DROP CONSTRAINT issuer_keys_status_check;
ALTER TABLE issuer_keys ADD CONSTRAINT issuer_keys_status_check
    CHECK (status IN ('active', 'retired', 'revoked'));
