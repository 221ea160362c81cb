-- What the retention purges have left to do, and nothing else (adapters/retention.py). Nearly
-- every notification is answered `applied` and its payload emptied then; the answered purge found
-- the few others by reading every answered row (after two years ~1.2 billion), and the
-- unanswered one read every overdue notification through `notifications_open`, emptied or not.
-- Each index's predicate is its purge's condition, so a row leaves it when it is purged and the
-- index holds only what a round has to do. Neither grows on the pipeline's path: a new
-- notification enters neither, an applied answer the first only with a reason (its payload is
-- emptied as it lands), an overdue one the second when the sweep marks it; and the updates that
-- add entries change the state, in other indexes already.
CREATE INDEX IF NOT EXISTS notifications_purge_pending ON notifications (feedback_at)
    WHERE feedback_at IS NOT NULL AND (payload IS NOT NULL
        OR reason IS NOT NULL
        OR jsonb_path_exists(conflicts, '$[*] ? (exists(@.ours) || exists(@.theirs))'));
CREATE INDEX IF NOT EXISTS notifications_overdue_payload ON notifications (deadline)
    WHERE state = 'overdue' AND payload IS NOT NULL;
