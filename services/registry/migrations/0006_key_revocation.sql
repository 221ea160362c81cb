-- A compromised certificate-signing key is revoked (exchangectl keys revoke): it signs no more,
-- and it stays in the JWKS marked "revoked" so that verification learns to refuse it.
ALTER TABLE signing_keys ADD COLUMN revoked_at timestamptz;
