-- Verifications are audited in two steps so that several processes never queue behind one lock:
-- each answer waits for its entry to be durable here (plain concurrent inserts, which PostgreSQL
-- group-commits), and one process at a time moves pending entries into the hash chain
-- (shared.audit.append) in the same transaction that deletes them.
CREATE TABLE audit_pending (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    client_id  text NOT NULL,
    action     text NOT NULL,
    purpose    text,
    subject    text,
    detail     jsonb NOT NULL
);
