-- A revocation is final (0004) against UPDATE only: deleting the revoked row let a later, or a
-- restored, copy of the clients file bring the old credential back. A revoked client's row stays.
CREATE FUNCTION clients_revoked_row_stays() RETURNS trigger AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'client % was revoked; its row is kept so the revocation stays final', OLD.client_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN OLD;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER clients_revoked_row_stays BEFORE DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION clients_revoked_row_stays();
