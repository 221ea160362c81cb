-- Who holds a record that a later event closes or corrects: the registry that recorded it and
-- every jurisdiction the exchange sent it to (a marriage under either spouse's key, a birth, a
-- pregnancy). A correction reaches them, a spouse's and a father's registries among them; a
-- pregnancy's closure or correction reaches them alone (services/migrant_exchange/domain/routing.py).
-- A record id and divisions: no personal data. A pregnancy's rows go once its closure is routed.
CREATE TABLE record_holders (
    record_type  text NOT NULL,
    record_id    uuid NOT NULL,
    division     text NOT NULL,
    PRIMARY KEY (record_type, record_id, division)
);

-- pregnancy_recipients (0021) knew the addressees of a pregnancy's registration, not its registrar.
INSERT INTO record_holders (record_type, record_id, division)
SELECT 'pregnancy', pregnancy_id, target_division FROM pregnancy_recipients;
DROP TABLE pregnancy_recipients;
