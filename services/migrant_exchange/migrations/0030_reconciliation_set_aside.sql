-- The records a pair's last reconciliation set aside: held by one of the pair and not sent to the
-- other, as the exchange's holders say (record_holders, certificate_holders; domain/reconcile.py
-- held_by). The next run asks both registries to leave them out of their digests, so a migrant
-- with records from an earlier residence does not make the pair's digests differ at every run.
-- A record's kind and exchange key (a uuid or a certificate number) and divisions: no personal data.
CREATE TABLE reconciliation_set_aside (
    division_a   text NOT NULL,
    division_b   text NOT NULL,
    record_type  text NOT NULL,
    record_key   text NOT NULL,
    PRIMARY KEY (division_a, division_b, record_type, record_key)
);
