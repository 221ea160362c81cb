-- Where each consumer group stands in each partition, by the service's own account: the next
-- offset after what it applied. A fresh member seeks here on assignment, so a group the broker
-- forgot (deleted, expired, or a memory-only broker restarted) resumes where it was; and lag is
-- measured against it, not against offsets the broker may no longer have. ``incarnation`` names
-- the broker log the offsets belong to (shared.kafka's incarnation marker): after a broker came
-- back empty, positions of the old log are ignored and the group reads the new log from its start.
CREATE TABLE consumer_positions (
    consumer     text NOT NULL,
    topic        text NOT NULL,
    partition    int NOT NULL,
    next_offset  bigint NOT NULL,
    incarnation  text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- The broker log (incarnation marker) the relay leader last published to. A replica that takes
-- the relay over and finds the broker on another log re-sends the recent outbox, even when the
-- leader before it died without noticing the broker had lost its log.
CREATE TABLE relay_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    incarnation  text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
