-- Delivery tracking, per-subject ordering, and reconciliation (清理清查) of jurisdiction pairs.

-- Re-sending a notification that got no feedback, with backoff.
ALTER TABLE notifications ADD COLUMN attempts int NOT NULL DEFAULT 1;
ALTER TABLE notifications ADD COLUMN next_attempt_at timestamptz;
CREATE INDEX notifications_retry ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_state_created ON notifications (state, created_at);

-- Per (subject, producing source): the highest sequence applied in order.
CREATE TABLE sequence_progress (
    subject        text NOT NULL,
    source         text NOT NULL,
    last_sequence  bigint NOT NULL,
    parked         int NOT NULL DEFAULT 0,   -- events of this pair waiting in parked_events
    PRIMARY KEY (subject, source)
);

-- Events that arrived before their predecessor wait here until the gap fills or the deadline passes.
CREATE TABLE parked_events (
    subject     text NOT NULL,
    source      text NOT NULL,
    sequence    bigint NOT NULL,
    event_id    uuid NOT NULL,
    value       bytea NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz NOT NULL,
    PRIMARY KEY (subject, source, sequence)
);
CREATE INDEX parked_events_deadline ON parked_events (deadline);

CREATE TABLE reconciliations (
    id              uuid PRIMARY KEY,
    division_a      text NOT NULL,
    division_b      text NOT NULL,
    trigger         text NOT NULL CHECK (trigger IN ('request', 'schedule')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    state           text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished', 'failed')),
    buckets         int NOT NULL,
    records_a       bigint,
    records_b       bigint,
    differing_buckets int,
    discrepancies   int,
    error           text
);
CREATE INDEX reconciliations_pair ON reconciliations (division_a, division_b, started_at DESC);

-- Every difference between two sides is a case an operator resolves (不重、不漏、不错).
CREATE TABLE discrepancies (
    id                 uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('missing', 'field_conflict', 'duplicate', 'sequence_gap')),
    division_a         text NOT NULL,
    division_b         text NOT NULL,
    subject            text NOT NULL,
    record_kind        text NOT NULL,
    record_key         text NOT NULL,
    missing_at         text,                 -- for 'missing': the side that lacks the record
    duplicated_at      text,                 -- for 'duplicate': the side that holds it twice
    fields             text[] NOT NULL DEFAULT '{}',  -- for 'field_conflict': names only, never values
    detail             jsonb NOT NULL DEFAULT '{}'::jsonb,
    reconciliation_id  uuid REFERENCES reconciliations (id),
    state              text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    resolution         jsonb
);
-- One open case per difference: a scheduled run that finds it again does not open another.
CREATE UNIQUE INDEX discrepancies_open_once ON discrepancies (kind, division_a, division_b, subject, record_key)
    WHERE state = 'open';
CREATE INDEX discrepancies_state ON discrepancies (state, created_at);
