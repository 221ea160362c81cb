-- The audit log is append-only for everyone but a superuser: no role may UPDATE, DELETE or
-- TRUNCATE its rows (the grants of the service role leave these out as well, see
-- shared.db.grant_service_role). A trigger fires for the table's owner too, so even the
-- migration role cannot rewrite history by accident; only a superuser who switches triggers
-- off (session_replication_role) can, and the signed checkpoints published outside the
-- database (shared.audit_anchor) show what such a rewrite changed.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- Client lifecycle (DESIGN.md section 10): credentials expire, a rotation keeps the previous
-- secret valid for an overlap, and a revocation is final.
ALTER TABLE clients
    ADD COLUMN expires_at           timestamptz,
    ADD COLUMN previous_secret_hash text,
    ADD COLUMN previous_expires_at  timestamptz;

CREATE FUNCTION clients_revocation_is_final() RETURNS trigger AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'client % was revoked; a revocation is final', OLD.client_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER clients_revocation_is_final BEFORE UPDATE ON clients
    FOR EACH ROW EXECUTE FUNCTION clients_revocation_is_final();
