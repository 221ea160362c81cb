-- Issue 17 point 8: every service's dead letters, as the exchange reads them from the <topic>.dlq
-- topics (the dashboard and GET /v1/dead-letters count them by service, topic and reason). Never
-- the message or its key: where, when and why only, reasons redacted and neutral.
CREATE TABLE dead_letter_census (
    id           text PRIMARY KEY,         -- the dead letter's id at the service that made it (dlq_id)
    service      text NOT NULL,
    consumer     text,
    topic        text NOT NULL,            -- the topic the message could not be applied from (neutral)
    reason       text NOT NULL,            -- its kind: "rejected: unsigned", "invalid event", ...
    detail       text NOT NULL,            -- the reason, redacted and neutral, at most 200 characters
    created_at   timestamptz NOT NULL,     -- when it was dead-lettered
    seen_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letter_census_created ON dead_letter_census (created_at);
