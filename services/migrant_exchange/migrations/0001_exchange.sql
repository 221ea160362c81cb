-- The exchange keeps no raw identity numbers: subjects are pseudonymous keys.

-- Where each subject is registered (hukou) and lives, as the vital events tell it.
CREATE TABLE roster (
    subject             text PRIMARY KEY,
    hukou_division      text,
    residence_division  text,
    residence_as_of     timestamptz,
    moves               int NOT NULL DEFAULT 0,
    last_event_at       timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX roster_migrants ON roster (hukou_division, residence_division)
    WHERE hukou_division IS DISTINCT FROM residence_division;

-- Inter-jurisdiction agreements (双向协议) as data. '*' matches any jurisdiction.
CREATE TABLE agreements (
    division_a         text NOT NULL,
    division_b         text NOT NULL,
    event_types        text[] NOT NULL,            -- '{*}' for every vital type
    deadline_seconds   double precision NOT NULL,
    visible_fields     jsonb NOT NULL DEFAULT '{}'::jsonb,  -- event type -> allowed fields; absent = all
    PRIMARY KEY (division_a, division_b)
);

CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    target_division  text NOT NULL,
    source_division  text NOT NULL,
    subject          text NOT NULL,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    event_sequence   bigint NOT NULL,
    event_time       timestamptz NOT NULL,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'applied', 'conflict', 'rejected', 'overdue')),
    deadline         timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    overdue_at       timestamptz,
    feedback_at      timestamptz,
    conflicts        jsonb,
    reason           text,
    UNIQUE (event_id, target_division)   -- one notification per event and counterpart, whatever redelivers
);
CREATE INDEX notifications_target_state ON notifications (target_division, state, created_at);
CREATE INDEX notifications_pending_deadline ON notifications (deadline) WHERE state = 'pending';
