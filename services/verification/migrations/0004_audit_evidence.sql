-- An online verification by number reads its certificate and queues its audit entry in one
-- statement per batch (services/verification/adapters/audit_writer.py, check_numbers). Its
-- entry then carries the evidence the verdict was drawn from, read in that same snapshot, and
-- the chainer writes the verdict into the chained detail with the same rule the answer used
-- (domain.verdict). checked_on is NULL for entries whose detail is final when queued.
ALTER TABLE audit_pending
    ADD COLUMN certificate_found boolean,
    ADD COLUMN holder_subject    text,      -- the certificate holder's pseudonymous key
    ADD COLUMN revoked_on        date,
    ADD COLUMN valid_until       date,
    ADD COLUMN checked_on        date;
