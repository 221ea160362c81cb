-- An outbox row the producer refuses for good (larger than its max_request_size or the broker's
-- limit, a topic name the broker refuses) is set aside: the relay marks it here, with the error's
-- name, and publishes the rows after it. It stays unpublished, counted by the gauge
-- outbox_refused_rows (alert OutboxRowsRefused), until an operator deals with it
-- (docs/reliability.md: clearing refused_at sends it again). Both columns are nullable without a
-- default: adding them rewrites nothing. The relay's queries keep to outbox_unpublished.
ALTER TABLE outbox ADD COLUMN refused_at timestamptz, ADD COLUMN refused_reason text;
