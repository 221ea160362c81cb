-- One instance may keep the records of several jurisdictions (JURISDICTIONS=320412,440703), and a
-- counterpart's marriage, birth or move reaches each of them under the same id (a person's origin
-- and destination both served here). A record is one jurisdiction's: its key is (jurisdiction,
-- id). Under the id alone the second copy was not inserted, yet answered as applied.
ALTER TABLE marriage_spouses DROP CONSTRAINT marriage_spouses_marriage_id_fkey;
ALTER TABLE marriage_spouses DROP CONSTRAINT marriage_spouses_pkey;
ALTER TABLE marriages DROP CONSTRAINT marriages_pkey;
ALTER TABLE marriages ADD PRIMARY KEY (jurisdiction, id);
ALTER TABLE marriage_spouses ADD PRIMARY KEY (jurisdiction, marriage_id, id_number);
ALTER TABLE marriage_spouses ADD FOREIGN KEY (jurisdiction, marriage_id)
    REFERENCES marriages (jurisdiction, id) ON DELETE CASCADE;
ALTER TABLE births DROP CONSTRAINT births_pkey;
ALTER TABLE births ADD PRIMARY KEY (jurisdiction, id);
ALTER TABLE migrations DROP CONSTRAINT migrations_pkey;
ALTER TABLE migrations ADD PRIMARY KEY (jurisdiction, id);

CREATE OR REPLACE FUNCTION marriage_spouses_sync() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO marriage_spouses (marriage_id, jurisdiction, id_number, active) VALUES
            (NEW.id, NEW.jurisdiction, NEW.spouse_a_id_number, NEW.dissolution_date IS NULL),
            (NEW.id, NEW.jurisdiction, NEW.spouse_b_id_number, NEW.dissolution_date IS NULL);
    ELSE
        UPDATE marriage_spouses SET active = (NEW.dissolution_date IS NULL)
         WHERE jurisdiction = NEW.jurisdiction AND marriage_id = NEW.id;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
