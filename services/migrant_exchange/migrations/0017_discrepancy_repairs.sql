-- A resolution that corrects sends a repair; the case is resolved only when the counterpart's
-- feedback to it says 'applied'. Until then it stays open, and says how far the repair got.
ALTER TABLE discrepancies
    ADD COLUMN repair_id               uuid,   -- carried as the repair's correction_id
    ADD COLUMN repair_notification_id  uuid,   -- the notification that took it to the lacking side
    ADD COLUMN repair_state            text CHECK (repair_state IN
        ('requested', 'awaiting_feedback', 'applied', 'conflict', 'rejected', 'failed', 'not_routed', 'overdue')),
    ADD COLUMN repair_requested_at     timestamptz,
    ADD COLUMN reason                  text;   -- why the last repair did not close the case
CREATE UNIQUE INDEX discrepancies_repair ON discrepancies (repair_id) WHERE repair_id IS NOT NULL;
CREATE INDEX discrepancies_repair_notification ON discrepancies (repair_notification_id)
    WHERE repair_notification_id IS NOT NULL;
