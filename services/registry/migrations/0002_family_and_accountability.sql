-- Marriages, pregnancies, corrections and certificate revocation as a registrar keeps them.
-- Written to be re-runnable (IF NOT EXISTS / guarded DO blocks): applying it twice changes nothing.

-- The event that made each record (ours, or the counterpart's for applied notifications), so a
-- correction can name the event it corrects.
ALTER TABLE persons      ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE migrations   ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE marriages    ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE marriages    ADD COLUMN IF NOT EXISTS registered_in text;
ALTER TABLE births       ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE certificates ADD COLUMN IF NOT EXISTS revocation_event_id uuid;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'marriages_dissolution_consistent') THEN
        ALTER TABLE marriages ADD CONSTRAINT marriages_dissolution_consistent CHECK (
            (dissolution_date IS NULL) = (dissolution_reason IS NULL)
            AND (dissolution_date IS NULL OR dissolution_date >= marriage_date)
            AND (dissolution_reason IS NULL OR dissolution_reason IN ('divorce', 'death', 'annulment')));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'certificates_revocation_consistent') THEN
        ALTER TABLE certificates ADD CONSTRAINT certificates_revocation_consistent CHECK (
            (revoked_on IS NULL) = (revocation_reason IS NULL));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'births_one_order_per_mother') THEN
        -- twins get consecutive orders; two different births can never share one
        ALTER TABLE births ADD CONSTRAINT births_one_order_per_mother
            UNIQUE (jurisdiction, mother_id_number, birth_order);
    END IF;
END $$;

-- Nobody is married twice at once: one row per spouse and marriage, kept by a trigger, with at most
-- one active marriage per person in each jurisdiction's records.
CREATE TABLE IF NOT EXISTS marriage_spouses (
    marriage_id   uuid NOT NULL REFERENCES marriages (id) ON DELETE CASCADE,
    jurisdiction  text NOT NULL,
    id_number     text NOT NULL,
    active        boolean NOT NULL,
    PRIMARY KEY (marriage_id, id_number)
);
CREATE UNIQUE INDEX IF NOT EXISTS marriage_spouses_one_active
    ON marriage_spouses (jurisdiction, id_number) WHERE active;
CREATE INDEX IF NOT EXISTS marriage_spouses_person ON marriage_spouses (jurisdiction, id_number);

CREATE OR REPLACE FUNCTION marriage_spouses_sync() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO marriage_spouses (marriage_id, jurisdiction, id_number, active) VALUES
            (NEW.id, NEW.jurisdiction, NEW.spouse_a_id_number, NEW.dissolution_date IS NULL),
            (NEW.id, NEW.jurisdiction, NEW.spouse_b_id_number, NEW.dissolution_date IS NULL);
    ELSE
        UPDATE marriage_spouses SET active = (NEW.dissolution_date IS NULL) WHERE marriage_id = NEW.id;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS marriages_spouses ON marriages;
CREATE TRIGGER marriages_spouses AFTER INSERT OR UPDATE OF dissolution_date ON marriages
    FOR EACH ROW EXECUTE FUNCTION marriage_spouses_sync();

INSERT INTO marriage_spouses (marriage_id, jurisdiction, id_number, active)
SELECT id, jurisdiction, spouse_a_id_number, dissolution_date IS NULL FROM marriages
UNION ALL
SELECT id, jurisdiction, spouse_b_id_number, dissolution_date IS NULL FROM marriages
ON CONFLICT DO NOTHING;

-- Pregnancies (sensitive): kept only by the mother's origin and destination registries.
CREATE TABLE IF NOT EXISTS pregnancies (
    id                 uuid NOT NULL,
    jurisdiction       text NOT NULL,
    mother_id_number   text NOT NULL,
    registered_in      text NOT NULL,
    registered_on      date NOT NULL,
    expected_delivery  date CHECK (expected_delivery IS NULL OR expected_delivery > registered_on),
    closed_on          date CHECK (closed_on IS NULL OR closed_on >= registered_on),
    outcome            text CHECK (outcome IN ('birth', 'ended', 'transferred')),
    source_division    text NOT NULL,
    source_event_id    uuid,
    event_id           uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction, id),
    CHECK ((closed_on IS NULL) = (outcome IS NULL))
);
-- one open pregnancy per mother
CREATE UNIQUE INDEX IF NOT EXISTS pregnancies_one_open
    ON pregnancies (jurisdiction, mother_id_number) WHERE closed_on IS NULL;
CREATE INDEX IF NOT EXISTS pregnancies_mother ON pregnancies (jurisdiction, mother_id_number, registered_on);

-- Corrections: which event they correct, what changed (and what it was), and why.
CREATE TABLE IF NOT EXISTS corrections (
    id                  uuid NOT NULL,
    jurisdiction        text NOT NULL,
    corrected_event_id  uuid NOT NULL,
    record_type         text NOT NULL
        CHECK (record_type IN ('person', 'marriage', 'migration', 'pregnancy', 'birth', 'certificate')),
    record_id           text NOT NULL,
    changes             jsonb NOT NULL CHECK (changes <> '{}'::jsonb),
    previous            jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason              text NOT NULL CHECK (length(reason) >= 3),
    source_division     text NOT NULL,
    source_event_id     uuid,
    event_id            uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction, id)
);
CREATE INDEX IF NOT EXISTS corrections_record ON corrections (jurisdiction, record_type, record_id);

-- Hot-path lookups not covered by 0001.
CREATE INDEX IF NOT EXISTS births_child ON births (jurisdiction, child_id_number) WHERE child_id_number IS NOT NULL;
CREATE INDEX IF NOT EXISTS persons_event ON persons (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS migrations_event ON migrations (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_event ON certificates (event_id) WHERE event_id IS NOT NULL;
