-- The revision of the clients file last applied to this database. Replicas apply the file when
-- their own mount of it changes, and a mounted Secret reaches pods up to a minute apart: a file
-- older than the one applied here is left as it is (shared/clients_file.py), so a late replica
-- cannot revoke what a newer edit added.
CREATE TABLE clients_file_applied (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    revision    bigint NOT NULL CHECK (revision >= 1),
    applied_at  timestamptz NOT NULL DEFAULT now()
);
